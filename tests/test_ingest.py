"""The delivery-report door: stored before the 2xx, applied after, bounded, inspectable."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from service.callback_inbox import Applier
from tests.conftest import Gateway, error_of, eventually, running_gateway
from tests.databases import db_count, db_rows

REPORT = {"id": "sbx-unknown", "to": "46700000001", "status": "DELIVERED"}


async def dlr_url(gateway: Gateway) -> str:
    account = (await gateway.api.get("/v1/accounts/sandbox")).json()
    url: str = account["callback_urls"]["dlr"]
    return url


@pytest.fixture
def applier_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stored callbacks wait: the applier finds nothing to do."""

    async def nothing(self: Applier) -> bool:
        return False

    monkeypatch.setattr(Applier, "run_once", nothing)


async def test_a_report_is_acknowledged_once_stored_and_applied_after(gateway: Gateway) -> None:
    [message] = await gateway.send(to="+46700000001", text="hi")
    delivered = await eventually(lambda: _status_is(gateway, message["id"], "delivered"), within=15)
    assert delivered
    [entry, *_] = (await gateway.api.get("/v1/reports", params={"state": "applied"})).json()[
        "reports"
    ]
    assert entry["account"] == "sandbox" and entry["applied_at"] is not None
    assert entry["reports"][0]["outcome"] == "matched"
    assert entry["reports"][0]["message_id"] == message["id"]


async def _status_is(gateway: Gateway, message_id: str, status: str) -> bool:
    found: str = (await gateway.message(message_id))["status"]
    return found == status


async def test_the_stored_callback_keeps_what_replay_needs_and_no_secret(gateway: Gateway) -> None:
    url = await dlr_url(gateway)
    key = url.split("key=")[1]
    body = f'{{"id": "r-1", "to": "46700000001", "status": "DELIVERED", "echo": "{key}"}}'
    response = await gateway.raw.post(
        url + "&extra=1", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 200 and response.json() == {"ok": True, "stored": 1}
    await gateway.applied()
    [entry] = (await gateway.api.get("/v1/reports")).json()["reports"]
    callback = entry["callback"]
    assert callback["method"] == "POST" and callback["content_type"] == "application/json"
    assert callback["query"] == "extra=1"
    assert '"id": "r-1"' in callback["body"] and key not in callback["body"]
    assert key not in str(await db_rows(gateway.settings, "SELECT * FROM callback_inbox"))


async def test_a_full_inbox_answers_503_with_retry_after_and_stores_nothing(
    tmp_path: Path, applier_stopped: None
) -> None:
    async with running_gateway(tmp_path, inbox_max_depth=2) as gateway:
        url = await dlr_url(gateway)
        for n in range(2):
            ok = await gateway.raw.post(url, json={**REPORT, "id": f"r-{n}"})
            assert ok.status_code == 200
        refused = await gateway.raw.post(url, json={**REPORT, "id": "r-2"})
        assert refused.status_code == 503 and refused.headers["retry-after"] == "5"
        assert error_of(refused)["code"] == "inbox_full"
        assert await db_count(gateway.settings, "SELECT COUNT(*) FROM callback_inbox") == 2


async def test_readyz_and_metrics_say_when_reports_wait(
    tmp_path: Path, applier_stopped: None
) -> None:
    async with running_gateway(tmp_path, inbox_max_lag=0.05) as gateway:
        assert (await gateway.raw.get("/readyz")).json() == {"status": "ready"}
        assert (await gateway.raw.post(await dlr_url(gateway), json=REPORT)).status_code == 200
        await asyncio.sleep(0.2)
        ready = await gateway.raw.get("/readyz")
        assert ready.status_code == 503 and ready.json()["status"] == "degraded"
        assert "inbox" in ready.json()["reasons"][0]
        metrics = (await gateway.api.get("/metrics")).text
        assert "smsgw_inbox_depth 1.0" in metrics
        lag = next(line for line in metrics.splitlines() if line.startswith("smsgw_inbox_lag"))
        assert float(lag.split()[1]) >= 0.2
        [entry] = (await gateway.api.get("/v1/reports", params={"state": "pending"})).json()[
            "reports"
        ]
        assert entry["reports"][0]["outcome"] == "pending" and entry["applied_at"] is None


async def test_a_method_other_than_get_or_post_is_405(gateway: Gateway) -> None:
    response = await gateway.raw.put(await dlr_url(gateway), json=REPORT)
    assert response.status_code == 405 and response.headers["allow"] == "GET, POST"


async def test_reports_are_listed_by_state_and_account_with_a_cursor(gateway: Gateway) -> None:
    url = await dlr_url(gateway)
    for n in range(3):
        assert (await gateway.raw.post(url, json={**REPORT, "id": f"r-{n}"})).status_code == 200
    assert (await gateway.raw.post(url, json={**REPORT, "id": "r-0"})).status_code == 200
    await gateway.applied()
    first = (await gateway.api.get("/v1/reports", params={"limit": 2})).json()
    assert [e["reports"][0]["request_id"] for e in first["reports"]] == ["r-0", "r-1"]
    rest = (
        await gateway.api.get("/v1/reports", params={"limit": 2, "after": first["next_cursor"]})
    ).json()
    assert [e["reports"][0]["outcome"] for e in rest["reports"]] == ["parked", "duplicate"]
    assert rest["next_cursor"] is not None
    parked = (await gateway.api.get("/v1/reports", params={"state": "parked"})).json()
    assert len(parked["reports"]) == 3
    other = (await gateway.api.get("/v1/reports", params={"account": "nobody"})).json()
    assert other == {"reports": [], "next_cursor": None}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"state": "lost"}, "state"),
        ({"since": "yesterday"}, "since"),
        ({"until": "2026-12-07T10:00:00"}, "until"),
        ({"after": "-1"}, "after"),
        ({"limit": "0"}, "limit"),
    ],
)
async def test_a_bad_report_filter_is_422_naming_it(
    gateway: Gateway, params: dict[str, str], field: str
) -> None:
    response = await gateway.api.get("/v1/reports", params=params)
    assert response.status_code == 422 and error_of(response)["field"] == field


@pytest.mark.parametrize(
    "body",
    [
        {"ids": []},
        {"ids": [0]},
        {"ids": ["1"]},
        {"ids": [True]},
        {"ids": [2**63]},
        {"ids": [1], "account": "sandbox"},
        {"state": "lost"},
        {"after": 5},
        {"color": "red"},
    ],
)
async def test_a_bad_replay_is_422_and_replays_nothing(
    gateway: Gateway, body: dict[str, Any]
) -> None:
    response = await gateway.api.post("/v1/reports/replay", json=body)
    assert response.status_code in (400, 422), response.text


async def test_replaying_applied_reports_changes_nothing(gateway: Gateway) -> None:
    [message] = await gateway.send(to="+46700000001", text="hi")
    await eventually(lambda: _status_is(gateway, message["id"], "delivered"), within=15)
    await gateway.applied()
    before = (await gateway.stats(), await gateway.message(message["id"]))
    replayed = await gateway.api.post("/v1/reports/replay", json={"account": "sandbox"})
    assert replayed.status_code == 200 and replayed.json()["replayed"] >= 1
    by_id = await gateway.api.post("/v1/reports/replay", json={"ids": [1, 999]})
    assert by_id.json() == {"replayed": 1, "next_cursor": None}
    after = (await gateway.stats(), await gateway.message(message["id"]))
    assert after[0] == before[0] and after[1]["status"] == before[1]["status"] == "delivered"
