"""Outbound event webhooks: Standard Webhooks signatures, filters, durable retries.

smsgw runs on loopback and sends through the sandbox account, which posts real DLRs
back; a receiver app on loopback records every delivery and answers as planned.
Signatures are checked with the independent `standardwebhooks` package.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from handlers import wire
from service.delivery import new_secret, retry_delay
from tests.conftest import Gateway, error_of, eventually, running_gateway
from tests.receiver import QUICK, Receiver


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[Gateway]:
    async with running_gateway(tmp_path, **QUICK) as gateway:
        yield gateway


async def register(gw: Gateway, url: str, events: list[str] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"url": url}
    if events is not None:
        body["events"] = events
    response = await gw.api.post("/v1/webhooks", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def webhook_state(gw: Gateway, webhook_id: str) -> dict[str, Any]:
    response = await gw.api.get(f"/v1/webhooks/{webhook_id}")
    assert response.status_code == 200, response.text
    state: dict[str, Any] = response.json()
    return state


async def until_state(gw: Gateway, webhook_id: str, **expected: Any) -> dict[str, Any]:
    """The webhook's view once every `expected` key has its value."""

    async def reached() -> dict[str, Any]:
        state = await webhook_state(gw, webhook_id)
        return state if all(state[k] == v for k, v in expected.items()) else {}

    return await eventually(reached)


async def until_final(gw: Gateway, message_id: str) -> dict[str, Any]:
    async def final() -> dict[str, Any]:
        message = await gw.message(message_id)
        return message if message["status"] in ("delivered", "undelivered") else {}

    return await eventually(final)


# -- signing -----------------------------------------------------------------------


async def test_a_delivery_is_signed_as_the_standard_webhooks_spec_says(
    gw: Gateway, receiver: Receiver
) -> None:
    hook = await register(gw, f"{receiver.url}/signed", ["message.queued"])
    assert hook["secret"].startswith("whsec_")
    [message] = await gw.send(to="+46700000001", text="sign me")
    [call] = await receiver.received(1)

    verified = Webhook(hook["secret"]).verify(call.body, call.headers)
    assert verified["type"] == "message.queued"
    assert verified["data"]["message_id"] == message["id"]
    assert call.headers["webhook-id"] == f"evt_{verified['data']['event_id']}"
    assert abs(int(call.headers["webhook-timestamp"]) - time.time()) < 10
    assert call.headers["content-type"] == "application/json"

    tampered = call.body.replace(b"message.queued", b"message.delivered")
    assert tampered != call.body
    with pytest.raises(WebhookVerificationError):
        Webhook(hook["secret"]).verify(tampered, call.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(call.body, call.headers)


async def test_the_payload_is_the_event_as_logs_show_it_with_numbers_masked(
    gw: Gateway, receiver: Receiver
) -> None:
    await register(gw, f"{receiver.url}/queued", ["message.queued"])
    [message] = await gw.send(to="+46700000001", text="mask me")
    [call] = await receiver.received(1)
    [queued] = [e for e in (await gw.message(message["id"]))["events"] if e["id"] == call.event[0]]
    data = call.payload["data"]
    assert call.payload["timestamp"] == data["ts"] == queued["ts"]
    assert (data["event"], data["account"], data["provider"]) == (
        "message.queued",
        "sandbox",
        "sandbox",
    )
    assert data["to"] == "+46******001" and "+46700000001" not in call.body.decode()


# -- filters -----------------------------------------------------------------------


async def test_each_webhook_hears_the_events_its_filters_name_from_its_creation_on(
    gw: Gateway, receiver: Receiver
) -> None:
    [earlier] = await gw.send(to="+46700000001", text="before any webhook")
    await until_final(gw, earlier["id"])
    everything = await register(gw, f"{receiver.url}/all", ["*"])
    finals = await register(
        gw, f"{receiver.url}/finals", ["message.delivered", "message.undelivered"]
    )
    reports = await register(gw, f"{receiver.url}/reports", ["dlr.*"])
    unfiltered = await register(gw, f"{receiver.url}/unfiltered")

    sent = await gw.send(to=["+46700000001", "+46700000003"], text="watched")
    for message in sent:
        await until_final(gw, message["id"])
    # Everything stored since the last registration, from the events API: a report
    # that raced ahead of its send answer adds a dlr.unmatched that no message lists.
    answer = await gw.api.get("/v1/events", params={"limit": 1000})
    log = [json.loads(line) for line in answer.text.splitlines()]
    [created_at] = [n for n, e in enumerate(log) if e.get("webhook_id") == unfiltered["id"]]
    events = [(e["event_id"], e["event"]) for e in log[created_at + 1 :]]
    assert {"message.delivered", "message.undelivered", "dlr.matched"} <= {n for _, n in events}

    async def all_arrived() -> bool:
        return len(receiver.at("/unfiltered")) >= len(events)

    await eventually(all_arrived)
    await asyncio.sleep(0.2)  # time for a duplicate or a stray event to turn up

    def heard(path: str) -> list[tuple[int, str]]:
        return sorted(c.event for c in receiver.at(path))

    assert heard("/unfiltered") == events
    assert heard("/finals") == [
        e for e in events if e[1] in ("message.delivered", "message.undelivered")
    ]
    assert heard("/reports") == [e for e in events if e[1].startswith("dlr.")]
    # Registered first, `*` also heard the later registrations, and never its own.
    registrations = [
        c.payload["data"]["webhook_id"]
        for c in receiver.at("/all")
        if c.event[1] == "webhook.created"
    ]
    assert sorted(registrations) == sorted(h["id"] for h in (finals, reports, unfiltered))
    assert everything["id"] not in registrations
    assert [e for e in heard("/all") if e[1] != "webhook.created"] == events


# -- retries -----------------------------------------------------------------------


async def test_a_failed_delivery_is_retried_under_the_same_webhook_id_until_it_succeeds(
    gw: Gateway, receiver: Receiver
) -> None:
    receiver.plan = [(500, {}), (502, {})]
    hook = await register(gw, f"{receiver.url}/flaky", ["message.queued"])
    await gw.send(to="+46700000001", text="retry me")
    calls = await receiver.received(3)
    assert [c.status for c in calls] == [500, 502, 200]
    assert len({c.headers["webhook-id"] for c in calls}) == 1
    for call in calls:
        Webhook(hook["secret"]).verify(call.body, call.headers)

    state = await until_state(gw, hook["id"], delivered=1)
    assert (state["failures"], state["last_status"], state["pending"]) == (0, 200, 0)
    assert state["last_error"] is None and state["last_attempt_at"]
    await asyncio.sleep(0.3)
    assert len(receiver.calls) == 3


async def test_retry_after_is_honoured_when_it_asks_for_longer_than_the_backoff(
    gw: Gateway, receiver: Receiver
) -> None:
    receiver.plan = [(429, {"Retry-After": "1"})]
    await register(gw, f"{receiver.url}/busy", ["message.queued"])
    await gw.send(to="+46700000001", text="wait for me")
    first, second = await receiver.received(2)
    # The backoff alone (capped at 0.2 s here) would have come back much sooner.
    assert second.at - first.at >= 0.95
    assert second.headers["webhook-id"] == first.headers["webhook-id"]


async def test_410_gone_disables_the_webhook_and_drops_its_backlog(
    gw: Gateway, receiver: Receiver
) -> None:
    receiver.then = 410
    hook = await register(gw, f"{receiver.url}/gone", ["message.queued"])
    await gw.send(to="+46700000001", text="first")
    state = await until_state(gw, hook["id"], active=False)
    assert (state["last_status"], state["pending"], state["delivered"]) == (410, 0, 0)

    [later] = await gw.send(to="+46700000002", text="second")
    await until_final(gw, later["id"])
    await asyncio.sleep(0.2)
    assert len(receiver.calls) == 1


async def test_pending_deliveries_survive_a_restart_and_arrive_exactly_once(
    tmp_path: Path, receiver: Receiver
) -> None:
    receiver.then = 500
    async with running_gateway(tmp_path, **QUICK) as gw:
        hook = await register(gw, f"{receiver.url}/down", ["message.queued"])
        await gw.send(to="+46700000001", text="outlive me")

        async def failing() -> dict[str, Any]:
            state = await webhook_state(gw, hook["id"])
            return state if state["failures"] >= 2 else {}

        state = await eventually(failing)
        assert (state["pending"], state["delivered"], state["last_status"]) == (1, 0, 500)
        assert state["last_error"] == "HTTP 500: planned failure"

    receiver.then = 200
    async with running_gateway(tmp_path, **QUICK) as gw:
        state = await until_state(gw, hook["id"], delivered=1)
        assert (state["pending"], state["failures"]) == (0, 0)
        await asyncio.sleep(0.3)
    answered = [c for c in receiver.calls if c.status == 200]
    assert len(answered) == 1
    assert {c.headers["webhook-id"] for c in receiver.calls} == {answered[0].headers["webhook-id"]}


async def test_a_delivery_is_dropped_once_it_is_older_than_give_up(
    tmp_path: Path, receiver: Receiver
) -> None:
    give_up = 0.6
    receiver.then = 503
    async with running_gateway(tmp_path, **QUICK, webhook_give_up=give_up) as gw:
        hook = await register(gw, f"{receiver.url}/never", ["message.queued"])
        await gw.send(to="+46700000001", text="give up on me")

        async def given_up() -> dict[str, Any]:
            state = await webhook_state(gw, hook["id"])
            return state if state["failures"] >= 2 and state["pending"] == 0 else {}

        state = await eventually(given_up)
        assert (state["delivered"], state["last_status"]) == (0, 503)
        attempts = len(receiver.calls)
        await asyncio.sleep(0.4)
        assert len(receiver.calls) == attempts
    # No attempt is scheduled past the deadline (a little slack for the poll interval).
    assert receiver.calls[-1].at - receiver.calls[0].at <= give_up + 0.2


def test_backoff_doubles_up_to_the_cap_with_full_jitter() -> None:
    for attempts, ceiling in ((1, 1.0), (2, 2.0), (4, 8.0), (9, 60.0), (10_000, 60.0)):
        delays = [retry_delay(attempts, 1.0, 60.0, None) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling / 2  # spread over the range, not pinned low
    assert retry_delay(1, 1.0, 60.0, 120.0) == 120.0


def test_a_receivers_retry_after_is_read_as_a_providers_is() -> None:
    now = time.time()
    in_a_minute = wire.retry_after({"retry-after": formatdate(now + 60, usegmt=True)}, now)
    assert in_a_minute is not None and 58 <= in_a_minute <= 61
    assert wire.retry_after({"retry-after": "\u00b2"}, now) is None  # isdigit() says yes


# -- the API -----------------------------------------------------------------------


async def test_the_secret_is_shown_once_and_masked_everywhere_after(
    gw: Gateway, receiver: Receiver
) -> None:
    hook = await register(gw, f"{receiver.url}/quiet", ["message.*"])
    secret = hook["secret"]
    assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) >= 24
    listed = await gw.api.get("/v1/webhooks")
    one = await gw.api.get(f"/v1/webhooks/{hook['id']}")
    assert secret not in listed.text and secret not in one.text
    [view] = listed.json()["webhooks"]
    assert view == one.json()
    assert view["secret"] == "********"
    assert {k: view[k] for k in ("id", "url", "events", "active", "pending", "delivered")} == {
        "id": hook["id"],
        "url": f"{receiver.url}/quiet",
        "events": ["message.*"],
        "active": True,
        "pending": 0,
        "delivered": 0,
    }
    assert (view["last_status"], view["last_error"], view["failures"]) == (None, None, 0)


async def test_a_deleted_webhook_gets_nothing_more(gw: Gateway, receiver: Receiver) -> None:
    receiver.then = 500
    hook = await register(gw, f"{receiver.url}/removed", ["message.queued"])
    await gw.send(to="+46700000001", text="undeliverable")
    await receiver.received(1)
    assert (await gw.api.delete(f"/v1/webhooks/{hook['id']}")).status_code == 204
    assert (await gw.api.get(f"/v1/webhooks/{hook['id']}")).status_code == 404
    assert (await gw.api.delete(f"/v1/webhooks/{hook['id']}")).status_code == 404
    assert (await gw.api.get("/v1/webhooks")).json()["webhooks"] == []
    await asyncio.sleep(0.1)  # an attempt already out may still land
    attempts = len(receiver.calls)
    await asyncio.sleep(0.4)
    assert len(receiver.calls) == attempts


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "url"),
        ({"url": 5}, "url"),
        ({"url": "ftp://example.org/hook"}, "url"),
        ({"url": "https://"}, "url"),
        ({"url": "example.org/hook"}, "url"),
        ({"url": "https://example.org/hook", "events": "message.*"}, "events"),
        ({"url": "https://example.org/hook", "events": ["Message Delivered"]}, "events[0]"),
        ({"url": "https://example.org/hook", "events": ["message.*", 3]}, "events[1]"),
        ({"url": "https://example.org/hook", "events": ["*.delivered"]}, "events[0]"),
        ({"url": "https://example.org/hook", "description": 7}, "description"),
        ({"url": "https://example.org/hook", "secret": "whsec_mine"}, "secret"),
        (["https://example.org/hook"], "body"),
    ],
)
async def test_an_invalid_webhook_is_422_naming_the_field(
    gw: Gateway, body: Any, field: str
) -> None:
    response = await gw.api.post("/v1/webhooks", json=body)
    assert response.status_code == 422 and error_of(response)["field"] == field
    assert "whsec_mine" not in response.text
    assert (await gw.api.get("/v1/webhooks")).json()["webhooks"] == []


async def test_an_unreadable_body_is_400_and_an_unknown_webhook_404(gw: Gateway) -> None:
    response = await gw.api.post(
        "/v1/webhooks", content=b"{", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400 and error_of(response)["field"] == "body"
    missing = await gw.api.get("/v1/webhooks/wh_nope")
    assert missing.status_code == 404 and error_of(missing)["field"] == "id"
    assert (await gw.raw.get("/v1/webhooks")).status_code == 401
