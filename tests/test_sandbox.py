"""The sandbox provider: the whole send → report → counters loop on one machine."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Gateway, eventually
from tests.databases import db_count


async def final_status(gateway: Gateway, message_id: str) -> str:
    async def final() -> str:
        status: str = (await gateway.message(message_id))["status"]
        return status if status not in ("queued", "sending", "submitted", "enroute") else ""

    return await eventually(final)


async def test_a_fresh_service_has_a_sandbox_account_ready(gateway: Gateway) -> None:
    account = (await gateway.api.get("/v1/accounts/sandbox")).json()
    assert account["provider"] == "sandbox" and account["active"] is True


async def test_a_sandbox_message_is_delivered_through_real_callbacks(gateway: Gateway) -> None:
    [message] = await gateway.send(to="+46700000001", text="Hello")
    assert await final_status(gateway, message["id"]) == "delivered"
    detail = await gateway.message(message["id"])
    assert detail["request_id"].startswith("sbx-") and detail["http_status"] == 200
    events = [e["event"] for e in detail["events"]]
    assert events[:3] == ["message.queued", "message.sending", "message.submitted"]
    assert events[-1] == "message.delivered" and "dlr.matched" in events


async def test_the_last_digit_chooses_the_sandbox_outcome(gateway: Gateway) -> None:
    numbers = {
        "+46700000001": "delivered",
        "+46700000003": "undelivered",
        "+46700000004": "expired",
        "+46700000005": "rejected",
        "+46700000009": "failed",
    }
    sent = await gateway.send(to=list(numbers), text="outcomes")
    for message in sent:
        assert await final_status(gateway, message["id"]) == numbers[message["to"]]
    counters: dict[str, Any] = (await gateway.stats())["accounts"]["sandbox"]
    assert counters == {
        "requests": 5,
        "accepted": 4,
        "failed": 1,
        "delivered": 1,
        "undelivered": 3,
        "pending": 0,
        "cancelled": 0,
        "unmatched": 0,
    }


async def test_the_sandbox_refuses_to_post_reports_anywhere_but_home(gateway: Gateway) -> None:
    response = await gateway.api.post(
        "/sandbox/api/messages",
        json={"to": ["46700000001"], "text": "x", "callback_url": "http://127.0.0.1:1/evil"},
    )
    assert response.status_code == 400


@pytest.mark.parametrize("status", [["DELIVERED"], {"name": "DELIVERED"}])
async def test_a_report_whose_status_is_not_text_is_4xx_and_stores_nothing(
    gateway: Gateway, status: object
) -> None:
    account = (await gateway.api.get("/v1/accounts/sandbox")).json()
    report = {"id": "sbx-1", "to": "46700000001", "status": status}
    response = await gateway.raw.post(account["callback_urls"]["dlr"], json=report)
    assert 400 <= response.status_code < 500, response.text
    assert await db_count(gateway.settings, "SELECT COUNT(*) FROM reports") == 0
