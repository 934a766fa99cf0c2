"""A client's quotas and rate limit (issue 18, slice 2), over real HTTP on both stores.

A client's key that sends past its day or month quota, or faster than its rate, gets
429 and nothing is queued; usage is counted per recipient when queued, per UTC day
and month, and shown with when it resets. The gateways here run on a clock the test
moves, so that a period ends when the test says.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.quotas import Period, period_start, resets_at
from tests.conftest import Gateway, clocked_gateway, error_of
from tests.servers import free_socket, until_ready, url_of
from tests.test_clients import add_client, holding
from tests.test_multiprocess import database, smsgw_processes  # noqa: F401 (a fixture)

SHOP = "+4670000000"


def epoch(moment: str) -> float:
    return datetime.fromisoformat(moment).timestamp()


class Clock:
    """A clock that stands still until the test moves it."""

    def __init__(self, moment: str) -> None:
        self.now = epoch(moment)

    def __call__(self) -> float:
        return self.now

    def set(self, moment: str) -> None:
        self.now = epoch(moment)

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock("2026-01-31T23:59:59+00:00")


@pytest.fixture
async def gateway(tmp_path: Path, clock: Clock) -> AsyncIterator[Gateway]:
    async with clocked_gateway(tmp_path, clock) as gw:
        yield gw


@pytest.fixture
async def shop(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    """The key of client "shop", whose limits each test sets."""
    created = await add_client(gateway, name="shop")
    async with holding(gateway, created["key"]) as client:
        yield client


async def limit(gateway: Gateway, **settings: Any) -> None:
    response = await gateway.api.patch("/v1/clients/shop", json=settings)
    assert response.status_code == 200, response.text


async def send(client: httpx.AsyncClient, count: int = 1, **more: Any) -> httpx.Response:
    """A send to `count` recipients."""
    to = [f"{SHOP}{n}" for n in range(count)]
    return await client.post("/v1/messages", json={"to": to, "text": "Hi", **more})


async def usage(gateway: Gateway) -> dict[str, Any]:
    body: dict[str, Any] = (await gateway.api.get("/v1/clients/shop")).json()["usage"]
    return body


async def stored_messages(gateway: Gateway) -> int:
    listed = await gateway.api.get("/v1/messages", params={"client": "shop", "limit": 1000})
    return len(listed.json()["messages"])


def refused(response: httpx.Response, code: str) -> dict[str, str]:
    assert response.status_code == 429, response.text
    error = error_of(response)
    assert error["code"] == code
    return error


# -- the periods --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("moment", "day", "month"),
    [
        ("2026-01-31T23:59:59+00:00", "2026-02-01T00:00:00+00:00", "2026-02-01T00:00:00+00:00"),
        ("2026-02-01T00:00:00+00:00", "2026-02-02T00:00:00+00:00", "2026-03-01T00:00:00+00:00"),
        ("2026-12-31T12:00:00+00:00", "2027-01-01T00:00:00+00:00", "2027-01-01T00:00:00+00:00"),
        ("2028-02-28T23:00:00-05:00", "2028-03-01T00:00:00+00:00", "2028-03-01T00:00:00+00:00"),
    ],
)
def test_a_period_is_a_utc_day_or_month_and_resets_at_its_end(
    moment: str, day: str, month: str
) -> None:
    at = epoch(moment)
    assert (resets_at(Period.DAY, at), resets_at(Period.MONTH, at)) == (epoch(day), epoch(month))
    assert period_start(Period.DAY, resets_at(Period.DAY, at)) == day[:10]
    assert period_start(Period.MONTH, resets_at(Period.MONTH, at)) == month[:7]


# -- quotas --------------------------------------------------------------------------------


async def test_a_send_past_the_day_quota_is_429_naming_it_and_queues_nothing(
    gateway: Gateway, shop: httpx.AsyncClient, clock: Clock
) -> None:
    await limit(gateway, quota={"day": 3})
    assert (await send(shop, 2)).status_code == 202
    assert (await send(shop, 1)).status_code == 202
    past = await send(shop, 1)
    error = refused(past, "quota_exceeded")
    assert error["field"] == "quota.day"
    assert "day quota of 3" in error["message"]
    metrics = (await gateway.api.get("/metrics")).text
    assert 'smsgw_client_refusals_total{client="shop",reason="quota_exceeded"} 1.0' in metrics
    assert "2026-02-01T00:00:00.000Z" in error["message"]
    assert past.headers["retry-after"] == "1"  # one second to midnight
    assert await stored_messages(gateway) == 3
    assert (await usage(gateway))["day"] == 3


async def test_a_send_that_does_not_fit_is_refused_whole(
    gateway: Gateway, shop: httpx.AsyncClient
) -> None:
    await limit(gateway, quota={"day": 5})
    assert (await send(shop, 3)).status_code == 202
    refused(await send(shop, 3), "quota_exceeded")
    assert await stored_messages(gateway) == 3
    assert (await usage(gateway))["day"] == 3
    assert (await send(shop, 2)).status_code == 202
    assert (await usage(gateway))["day"] == 5


async def test_the_day_and_the_month_reset_at_their_boundaries(
    gateway: Gateway, shop: httpx.AsyncClient, clock: Clock
) -> None:
    await limit(gateway, quota={"day": 1, "month": 2})
    assert (await send(shop)).status_code == 202
    refused(await send(shop), "quota_exceeded")
    clock.set("2026-02-01T00:00:00+00:00")  # a new day and a new month
    assert (await send(shop)).status_code == 202
    shown = await usage(gateway)
    assert (shown["day"], shown["month"]) == (1, 1)
    assert shown["resets_at"] == {
        "day": "2026-02-02T00:00:00.000Z",
        "month": "2026-03-01T00:00:00.000Z",
    }
    clock.set("2026-02-02T08:00:00+00:00")
    assert (await send(shop)).status_code == 202
    clock.set("2026-02-03T08:00:00+00:00")
    past = await send(shop)
    error = refused(past, "quota_exceeded")
    assert error["field"] == "quota.month" and "month quota of 2" in error["message"]
    assert "2026-03-01T00:00:00.000Z" in error["message"]
    assert int(past.headers["retry-after"]) == int(epoch("2026-03-01T00:00:00+00:00") - clock())
    clock.set("2026-03-01T00:00:00+00:00")
    assert (await send(shop)).status_code == 202
    assert await stored_messages(gateway) == 4


async def test_a_recipient_who_opted_out_is_not_counted(
    gateway: Gateway, shop: httpx.AsyncClient
) -> None:
    await limit(gateway, quota={"day": 1})
    stop = await gateway.api.post("/v1/suppressions", json={"number": f"{SHOP}0"})
    assert stop.status_code == 201, stop.text
    sent = await send(shop, 2)
    assert sent.status_code == 202
    assert [m["status"] for m in sent.json()["messages"]] == ["failed", "queued"]
    assert (await usage(gateway))["day"] == 1


async def test_admin_tokens_have_no_quota_and_count_against_no_client(
    gateway: Gateway, shop: httpx.AsyncClient
) -> None:
    await limit(gateway, quota={"day": 0, "month": 0}, rate_per_second=1)
    refused(await send(shop), "quota_exceeded")
    for _ in range(3):
        assert (await send(gateway.api, 3)).status_code == 202
    assert (await usage(gateway))["day"] == 0


async def test_a_cancelled_message_gives_its_quota_back(
    gateway: Gateway, shop: httpx.AsyncClient
) -> None:
    await limit(gateway, quota={"day": 1, "month": 1})
    later = datetime.now(UTC).replace(microsecond=0).timestamp() + 3600
    queued = await send(shop, send_at=datetime.fromtimestamp(later, UTC).isoformat())
    assert queued.status_code == 202
    refused(await send(shop), "quota_exceeded")
    [message] = queued.json()["messages"]
    assert (await shop.delete(f"/v1/messages/{message['id']}")).status_code == 200
    assert ((await usage(gateway))["day"], (await usage(gateway))["month"]) == (0, 0)
    assert (await send(shop)).status_code == 202


async def test_a_cancel_gives_back_to_the_periods_the_message_was_counted_in(
    gateway: Gateway, shop: httpx.AsyncClient, clock: Clock
) -> None:
    await limit(gateway, quota={"day": 1})
    later = datetime.now(UTC).replace(microsecond=0).timestamp() + 3600
    queued = await send(shop, send_at=datetime.fromtimestamp(later, UTC).isoformat())
    [message] = queued.json()["messages"]
    clock.set("2026-02-01T09:00:00+00:00")  # counted on 31 January; cancelled on 1 February
    assert (await send(shop)).status_code == 202
    assert (await shop.delete(f"/v1/messages/{message['id']}")).status_code == 200
    shown = await usage(gateway)
    assert (shown["day"], shown["month"]) == (1, 1)  # today's send stays counted
    refused(await send(shop), "quota_exceeded")


async def test_a_repeated_send_counts_once_and_a_refused_one_is_not_remembered(
    gateway: Gateway, shop: httpx.AsyncClient, clock: Clock
) -> None:
    await limit(gateway, quota={"day": 1})
    once = {"Idempotency-Key": "order-1"}
    body = {"to": f"{SHOP}1", "text": "Hi"}
    answer = await shop.post("/v1/messages", json=body, headers=once)
    again = await shop.post("/v1/messages", json=body, headers=once)
    assert answer.status_code == again.status_code == 202 and answer.json() == again.json()
    assert (await usage(gateway))["day"] == 1
    later = {"Idempotency-Key": "order-2"}
    refused(await shop.post("/v1/messages", json=body, headers=later), "quota_exceeded")
    clock.advance(1)  # the next day
    assert (await shop.post("/v1/messages", json=body, headers=later)).status_code == 202


async def test_two_gateways_sending_at_the_edge_at_once_never_pass_it(
    tmp_path: Path, clock: Clock
) -> None:
    """Two smsgw instances on one store (PostgreSQL: separate connection pools, so
    separate transactions racing), each firing sends of two recipients at once."""
    async with (
        clocked_gateway(tmp_path, clock) as one,
        clocked_gateway(tmp_path, clock) as two,
    ):
        created = await add_client(one, name="shop", quota={"day": 11})
        async with holding(one, created["key"]) as a, holding(two, created["key"]) as b:
            answers = await asyncio.gather(*(send(k, 2) for k in [a, b] * 12))
        statuses = sorted(r.status_code for r in answers)
        assert statuses == [202] * 5 + [429] * 19
        assert {error_of(r)["code"] for r in answers if r.status_code == 429} == {"quota_exceeded"}
        assert await stored_messages(one) == 10
        assert (await usage(two))["day"] == 10


async def test_two_smsgw_processes_sending_at_the_edge_at_once_never_pass_it(
    database: str,  # noqa: F811 (the fixture imported above)
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The issue's race: two `smsgw serve` processes on one PostgreSQL database."""
    folder = tmp_path_factory.mktemp("quota-race")
    sockets = [free_socket() for _ in range(2)]
    urls = [url_of(sock) for sock in sockets]
    for sock in sockets:
        sock.close()  # the processes bind these ports themselves
    admin = {"Authorization": "Bearer race-admin"}
    env = {
        **os.environ,
        "DATABASE_URL": database,
        "SMSGW_API_TOKENS": "race-admin",
        "SMSGW_DATA": str(folder),
    }
    commands = [["serve", "--port", url.rsplit(":", 1)[1]] for url in urls]
    with smsgw_processes(env, commands, folder):
        for url in urls:
            await until_ready(url)
        async with httpx.AsyncClient(timeout=30) as http:
            created = await http.post(
                f"{urls[0]}/v1/clients", json={"name": "shop", "quota": {"day": 11}}, headers=admin
            )
            assert created.status_code == 201, created.text
            key = {"Authorization": f"Bearer {created.json()['key']}"}
            body = {"to": [f"{SHOP}1", f"{SHOP}2"], "text": "Hi"}
            answers = await asyncio.gather(
                *(http.post(f"{url}/v1/messages", json=body, headers=key) for url in urls * 12)
            )
            assert sorted(r.status_code for r in answers) == [202] * 5 + [429] * 19
            listed = await http.get(
                f"{urls[1]}/v1/messages", params={"client": "shop", "limit": 100}, headers=admin
            )
            assert len(listed.json()["messages"]) == 10


# -- the rate limit -------------------------------------------------------------------------


async def test_sending_faster_than_the_rate_is_429_until_the_client_waits(
    gateway: Gateway, shop: httpx.AsyncClient, clock: Clock
) -> None:
    await limit(gateway, rate_per_second=2, quota={"day": 100})
    assert (await send(shop)).status_code == 202
    assert (await send(shop)).status_code == 202
    fast = await send(shop)
    error = refused(fast, "rate_limited")
    assert error["field"] == "rate_per_second" and "2 messages a second" in error["message"]
    assert fast.headers["retry-after"] == "1"
    clock.advance(0.5)
    assert (await send(shop)).status_code == 202
    refused(await send(shop), "rate_limited")
    assert await stored_messages(gateway) == 3
    assert (await usage(gateway))["day"] == 3  # a refused send used no quota
    metrics = (await gateway.api.get("/metrics")).text
    assert 'smsgw_client_refusals_total{client="shop",reason="rate_limited"} 2.0' in metrics


async def test_a_batch_larger_than_a_second_goes_and_the_client_waits_it_off(
    gateway: Gateway, shop: httpx.AsyncClient, clock: Clock
) -> None:
    await limit(gateway, rate_per_second=2)
    assert (await send(shop, 5)).status_code == 202
    fast = await send(shop)
    refused(fast, "rate_limited")
    assert fast.headers["retry-after"] == "2"  # 3 in debt, one more needed: 4 at 2 a second
    clock.advance(2)
    assert (await send(shop)).status_code == 202


# -- usage, where it is shown -----------------------------------------------------------------


async def test_usage_is_shown_to_the_admin_and_to_the_client(
    gateway: Gateway, shop: httpx.AsyncClient
) -> None:
    await limit(gateway, quota={"month": 50})
    assert (await send(shop, 4)).status_code == 202
    expected = {
        "day": 4,
        "month": 4,
        "resets_at": {"day": "2026-02-01T00:00:00.000Z", "month": "2026-02-01T00:00:00.000Z"},
    }
    assert await usage(gateway) == expected
    [listed] = (await gateway.api.get("/v1/clients")).json()["clients"]
    assert listed["usage"] == expected
    own = (await shop.get("/v1/stats")).json()
    assert own["usage"] == expected
    assert "usage" not in (await gateway.api.get("/v1/stats")).json()
