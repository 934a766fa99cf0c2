"""/v1/events and /v1/events/stream: a log pipeline's view, resumable by cursor."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.conftest import Gateway, eventually, running_gateway


async def events_page(gateway: Gateway, **params: Any) -> tuple[list[dict[str, Any]], str]:
    answer = await gateway.api.get("/v1/events", params=params)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in answer.text.splitlines()]
    return lines, answer.headers["smsgw-next-cursor"]


async def all_events(gateway: Gateway) -> list[dict[str, Any]]:
    lines, _ = await events_page(gateway, limit=1000)
    return lines


async def delivered_message(gateway: Gateway, to: str = "+46700000001") -> str:
    [message] = await gateway.send(to=to, text="hello")

    async def final() -> bool:
        status: str = (await gateway.message(message["id"]))["status"]
        return status == "delivered"

    await eventually(final)
    message_id: str = message["id"]
    return message_id


async def test_events_are_ndjson_lines_with_the_log_lines_keys(gateway: Gateway) -> None:
    message_id = await delivered_message(gateway)
    lines = await all_events(gateway)
    ids = [line["event_id"] for line in lines]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    ours = [line for line in lines if line.get("message_id") == message_id]
    assert [line["event"] for line in ours] == [
        "message.queued",
        "message.sending",
        "message.submitted",
        "dlr.matched",
        "message.enroute",
        "dlr.matched",
        "message.delivered",
    ]
    delivered = ours[-1]
    assert {"ts", "level", "event", "event_id", "account", "provider", "status"} <= set(delivered)
    assert (delivered["account"], delivered["provider"], delivered["status"]) == (
        "sandbox",
        "sandbox",
        "delivered",
    )
    assert delivered["ts"].endswith("Z") and isinstance(delivered["latency_ms"], int)
    assert ours[0]["to"] == "+46******001"


async def test_the_events_of_a_message_are_the_ones_its_history_shows(gateway: Gateway) -> None:
    message_id = await delivered_message(gateway)
    history = (await gateway.message(message_id))["events"]
    lines = [line for line in await all_events(gateway) if line.get("message_id") == message_id]
    assert [(e["id"], e["event"]) for e in history] == [
        (line["event_id"], line["event"]) for line in lines
    ]


async def test_a_reader_resumes_after_its_cursor_without_gaps_or_repeats(
    gateway: Gateway,
) -> None:
    await delivered_message(gateway)
    everything = await all_events(gateway)
    seen: list[dict[str, Any]] = []
    cursor = "0"
    while True:
        page, cursor_after = await events_page(gateway, after=cursor, limit=3)
        if not page:
            assert cursor_after == cursor
            break
        assert len(page) <= 3 and cursor_after == str(page[-1]["event_id"])
        seen.extend(page)
        cursor = cursor_after
    assert seen == everything


async def test_a_cursor_survives_a_restart_of_smsgw(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as gateway:
        await delivered_message(gateway)
        before = await all_events(gateway)
        cursor = str(before[-1]["event_id"])
    async with running_gateway(tmp_path) as gateway:
        await delivered_message(gateway, "+46700000002")
        after, _ = await events_page(gateway, after=cursor, limit=1000)
        everything = await all_events(gateway)
    assert before + after == everything
    assert any(line.get("to") == "+46******002" for line in after)


async def test_a_bad_cursor_or_limit_is_a_clear_4xx(gateway: Gateway) -> None:
    for params, status, field in (
        ({"after": "x"}, 400, "after"),
        ({"after": "-1"}, 400, "after"),
        ({"limit": "0"}, 422, "limit"),
        ({"limit": "5000"}, 422, "limit"),
    ):
        answer = await gateway.api.get("/v1/events", params=params)
        assert (answer.status_code, answer.json()["error"]["field"]) == (status, field)
    assert (await gateway.raw.get("/v1/events")).status_code == 401
    assert (await gateway.raw.get("/v1/events/stream")).status_code == 401


async def read_stream(
    gateway: Gateway, until: str, headers: dict[str, str] | None = None, **params: Any
) -> list[tuple[str, str, dict[str, Any]]]:
    """(id, event, data) of each frame until an event named `until` arrives."""
    frames: list[tuple[str, str, dict[str, Any]]] = []
    async with gateway.api.stream(
        "GET", "/v1/events/stream", params=params, headers=headers or {}
    ) as answer:
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/event-stream")
        fields: dict[str, str] = {}
        async for line in answer.aiter_lines():
            if line:
                name, _, value = line.partition(":")
                fields[name] = value.strip()
                continue
            if "data" in fields:
                frames.append((fields["id"], fields["event"], json.loads(fields["data"])))
                if fields["event"] == until:
                    return frames
            fields = {}
    raise AssertionError("the stream ended early")


async def test_the_stream_sends_history_then_live_events_and_resumes_by_last_event_id(
    gateway: Gateway,
) -> None:
    [message] = await gateway.send(to="+46700000001", text="streamed")
    frames = await read_stream(gateway, until="message.delivered", after=0)
    assert [e for _, e, data in frames if data.get("message_id") == message["id"]][-1] == (
        "message.delivered"
    )
    assert all(frame_id == str(data["event_id"]) for frame_id, _, data in frames)
    last_id = frames[-1][0]
    # Live: a message sent after the reader connected arrives on the same stream kind.
    [later] = await gateway.send(to="+46700000002", text="later")
    resumed = await read_stream(
        gateway, until="message.delivered", headers={"Last-Event-ID": last_id}
    )
    assert int(resumed[0][0]) > int(last_id)
    assert {data.get("message_id") for _, _, data in resumed} == {later["id"]}


async def test_a_stream_delivers_events_committed_after_it_opened(gateway: Gateway) -> None:
    lines = await all_events(gateway)
    cursor = lines[-1]["event_id"] if lines else 0
    async with gateway.api.stream("GET", "/v1/events/stream", params={"after": cursor}) as answer:
        await gateway.send(to="+46700000001", text="wake up")
        async for line in answer.aiter_lines():
            if line.startswith("event:"):
                assert line == "event: message.queued"
                break
