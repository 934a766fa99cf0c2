"""Provider callbacks: authenticated, bounded, durable before 2xx."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Gateway, error_of, running_gateway
from tests.databases import db_count, writes_blocked


async def stored_reports(gateway: Gateway) -> int:
    """Reports stored: applied, or in the inbox waiting to be."""
    await gateway.applied()
    return await db_count(gateway.settings, "SELECT COUNT(*) FROM reports")


async def stored_callbacks(gateway: Gateway) -> int:
    return await db_count(gateway.settings, "SELECT COUNT(*) FROM callback_inbox")


async def callback_urls(gateway: Gateway, account: str = "sandbox") -> dict[str, str]:
    urls: dict[str, str] = (await gateway.api.get(f"/v1/accounts/{account}")).json()[
        "callback_urls"
    ]
    return urls


REPORT = {"id": "sbx-unknown", "to": "46700000001", "status": "DELIVERED"}


async def test_a_report_with_the_right_key_is_stored_and_acknowledged(gateway: Gateway) -> None:
    response = await gateway.raw.post((await callback_urls(gateway))["dlr"], json=REPORT)
    assert response.status_code == 200 and response.json() == {"ok": True, "stored": 1}
    assert await stored_callbacks(gateway) == 1
    assert await stored_reports(gateway) == 1
    [entry] = (await gateway.api.get("/v1/reports")).json()["reports"]
    assert entry["state"] == "parked" and entry["reports"][0]["outcome"] == "parked"


async def test_a_report_may_arrive_as_a_get_query_or_a_form(gateway: Gateway) -> None:
    url = (await callback_urls(gateway))["dlr"]
    with_query = httpx.URL(url).copy_merge_params({**REPORT, "id": "g1"})
    assert (await gateway.raw.get(with_query)).status_code == 200
    assert (await gateway.raw.post(url, data={**REPORT, "id": "f1"})).status_code == 200
    assert await stored_reports(gateway) == 2


@pytest.mark.parametrize(("key", "status"), [(None, 401), ("wrong", 403), ("", 401)])
async def test_a_missing_or_wrong_key_is_refused_and_stores_nothing(
    gateway: Gateway, key: str | None, status: int
) -> None:
    url = f"{gateway.url}/callbacks/sandbox/dlr"
    params = {} if key is None else {"key": key}
    response = await gateway.raw.post(url, params=params, json=REPORT)
    assert response.status_code == status
    assert await stored_callbacks(gateway) == 0
    assert await stored_reports(gateway) == 0


def comparable(answer: httpx.Response) -> tuple[int, bytes, list[tuple[str, str]]]:
    """Everything an answer shows but the clock."""
    headers = sorted((k, v) for k, v in answer.headers.items() if k != "date")
    return answer.status_code, answer.content, headers


@pytest.mark.parametrize("kind", ["dlr", "inbound"])
@pytest.mark.parametrize("key", [None, "", "x", "wrong-but-as-long-as-a-real-key-is-32c"])
async def test_an_unknown_account_is_answered_exactly_like_a_wrong_key(
    tmp_path: Path, kind: str, key: str | None
) -> None:
    # Account names cannot be enumerated: nothing in the answer tells them apart.
    async with running_gateway(tmp_path, auth_failure_limit=10_000) as gw:
        params = {} if key is None else {"key": key}
        known = await gw.raw.post(f"/callbacks/sandbox/{kind}", params=params, json=REPORT)
        unknown = await gw.raw.post(f"/callbacks/ghost/{kind}", params=params, json=REPORT)
        assert known.status_code in (401, 403)
        assert comparable(unknown) == comparable(known)
        assert await stored_reports(gw) == 0


async def test_unknown_accounts_and_wrong_keys_count_as_failures_alike(tmp_path: Path) -> None:
    async with running_gateway(tmp_path, auth_failure_limit=2) as gw:
        first = await gw.raw.post("/callbacks/ghost/dlr?key=x", json=REPORT)
        second = await gw.raw.post("/callbacks/sandbox/dlr?key=x", json=REPORT)
        assert (first.status_code, second.status_code) == (403, 403)
        for account in ("ghost", "sandbox"):
            third = await gw.raw.post(f"/callbacks/{account}/dlr?key=x", json=REPORT)
            assert third.status_code == 429 and error_of(third)["code"] == "too_many_requests"


@pytest.mark.parametrize(
    "body",
    [
        b"{",
        b"[1, 2]",
        b'{"id": "x"}',
        b'{"id": "x", "status": "LOST"}',
        b"\xff\xfe\x00",
        b'{"id": ["x"], "status": "DELIVERED"}',
        b"id=&status=DELIVERED",
    ],
)
async def test_a_malformed_report_is_4xx_and_stores_nothing(gateway: Gateway, body: bytes) -> None:
    url = (await callback_urls(gateway))["dlr"]
    for content_type in ("application/json", "application/x-www-form-urlencoded"):
        response = await gateway.raw.post(url, content=body, headers={"content-type": content_type})
        assert 400 <= response.status_code < 500, response.text
    assert await stored_reports(gateway) == 0


async def test_a_callback_over_64_kib_is_413(gateway: Gateway) -> None:
    url = (await callback_urls(gateway))["dlr"]
    response = await gateway.raw.post(
        url, content=b"x" * 70_000, headers={"content-type": "text/plain"}
    )
    assert response.status_code == 413

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b"y" * 4096

    # Without a Content-Length the body is counted as it arrives.
    streamed = await gateway.raw.post(url, content=chunks())
    assert streamed.status_code == 413
    assert await stored_reports(gateway) == 0


async def test_inbound_messages_are_stored_once_and_listed_newest_first_from_e164(
    gateway: Gateway,
) -> None:
    url = (await callback_urls(gateway))["inbound"]
    for provider_id, text in (("in-1", "first"), ("in-2", "second"), ("in-2", "second")):
        response = await gateway.raw.post(
            url, json={"from": "46700000009", "to": "46700000000", "text": text, "id": provider_id}
        )
        assert response.status_code == 200
    listed = (await gateway.api.get("/v1/inbound")).json()
    assert [i["text"] for i in listed["inbound"]] == ["second", "first"]
    # Senders are kept in E.164, the form an opt-out must match outgoing recipients in.
    assert listed["inbound"][0]["from"] == "+46700000009" and listed["next_cursor"] is None


async def test_a_report_the_store_cannot_commit_gets_503_so_the_provider_retries(
    tmp_path: Path,
) -> None:
    async with running_gateway(tmp_path, busy_timeout=0.2) as gateway:
        url = (await callback_urls(gateway))["dlr"]
        async with writes_blocked(gateway.settings):  # another process holding a lock
            refused = await gateway.raw.post(url, json=REPORT)
        assert refused.status_code == 503 and error_of(refused)["code"] == "unavailable"
        assert await stored_reports(gateway) == 0
        assert (await gateway.raw.post(url, json=REPORT)).status_code == 200
        assert await stored_reports(gateway) == 1
