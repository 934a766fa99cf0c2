"""Priority lanes (issue 19, item 2): high goes first, bulk takes at most its share
while normal messages wait, on both stores; over real HTTP and against a store and a
dispatcher run by hand, one pass at a time."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from service.accounts import AccountDirectory
from service.dispatcher import Dispatcher
from service.lanes import interleave
from service.metrics import Metrics
from service.model import NewMessage, Priority
from service.store import Store, open_store
from service.transport import provider_client
from tests import rig as rigging
from tests.conftest import Gateway, error_of, eventually, make_settings
from tests.databases import db_rows
from tests.fake_connectel import FakeConnectel
from tests.servers import serve

H, N, B = Priority.HIGH, Priority.NORMAL, Priority.BULK


def number(n: int) -> str:
    return f"+4670{n:07d}"


def new(n: int, priority: Priority) -> NewMessage:
    return NewMessage(f"m{n}", "conn", number(n), "hi", "IKEA", "GSM-7", 1, priority=priority)


@dataclass
class Outbox:
    """A store with account "conn" (loop, on a fake Connectel) and a dispatcher whose
    passes the test runs itself: the order the fake got its requests in is the order
    the dispatcher chose, as one request is in flight at a time."""

    store: Store
    dispatcher: Dispatcher
    fake: FakeConnectel
    priorities: dict[str, Priority]

    async def queue(self, *lanes: Priority, first: int = 0) -> None:
        messages = [new(first + n, p) for n, p in enumerate(lanes)]
        self.priorities |= {number(first + n).lstrip("+"): p for n, p in enumerate(lanes)}
        await self.store.enqueue(messages, {})

    def sent(self) -> list[Priority]:
        return [self.priorities[s["recipient"]] for s in self.fake.sent]


@asynccontextmanager
async def outbox(tmp_path: Path, rate: float = 1000.0, **settings: Any) -> AsyncIterator[Outbox]:
    fake = FakeConnectel(rigging.CONNECTEL_TOKEN)
    chosen = make_settings(tmp_path, **{"concurrency": 1, **settings})
    async with serve(fake.app) as fake_url, provider_client(chosen) as client:
        store = open_store(chosen)
        await store.open()
        try:
            account = replace(rigging.loop_connectel(fake_url), options={"rate_per_second": rate})
            await store.create_account(account)
            dispatcher = Dispatcher(store, AccountDirectory(store), chosen, client, Metrics())
            yield Outbox(store, dispatcher, fake, {})
        finally:
            await store.close()


def bulk_within_share(order: Sequence[Priority], share: float) -> bool:
    """Whether, at every point of `order` before the last normal message went, bulk
    had taken at most `share` of the messages sent."""
    last_normal = max(i for i, p in enumerate(order) if p is N)
    return all(order[: i + 1].count(B) <= share * (i + 1) for i in range(last_normal + 1))


# -- what a send may ask for ------------------------------------------------------------


@pytest.mark.parametrize("value", ["urgent", "HIGH", "", 1, True, ["high"], {"lane": "high"}])
async def test_a_priority_other_than_high_normal_or_bulk_is_a_422_naming_it_and_stores_nothing(
    gateway: Gateway, value: object
) -> None:
    response = await gateway.api.post(
        "/v1/messages", json={"to": "+46700000001", "text": "hi", "priority": value}
    )
    assert response.status_code == 422, response.text
    assert error_of(response)["field"] == "priority"
    assert "high, normal, bulk" in error_of(response)["message"]
    assert (await gateway.api.get("/v1/messages")).json()["messages"] == []


async def test_a_message_is_normal_unless_it_says_otherwise_and_its_views_show_it(
    gateway: Gateway,
) -> None:
    [plain] = await gateway.send(to="+46700000001", text="hi")
    [urgent] = await gateway.send(to="+46700000002", text="code 1234", priority="high")
    [campaign] = await gateway.send(to="+46700000003", text="sale", priority="bulk")
    assert [m["priority"] for m in (plain, urgent, campaign)] == ["normal", "high", "bulk"]
    for answered in (plain, urgent, campaign):
        shown = await gateway.message(answered["id"])
        assert shown["priority"] == answered["priority"]
    listed = (await gateway.api.get("/v1/messages")).json()["messages"]
    assert sorted(m["priority"] for m in listed) == ["bulk", "high", "normal"]
    queued = (await gateway.message(urgent["id"]))["events"][0]
    assert (queued["event"], queued["priority"]) == ("message.queued", "high")


# -- the order of one pass ----------------------------------------------------------------


async def test_high_goes_before_bulk_and_normal_queued_earlier(tmp_path: Path) -> None:
    async with outbox(tmp_path) as box:
        await box.queue(B, B, B, N, N, H, H)
        assert await box.dispatcher.run_once()
        assert box.sent()[:2] == [H, H]
        assert sorted(box.sent()) == sorted([B, B, B, N, N, H, H])


async def test_bulk_takes_its_share_while_normal_waits_and_normal_is_not_starved(
    tmp_path: Path,
) -> None:
    async with outbox(tmp_path, bulk_share=0.25) as box:
        await box.queue(*[B] * 12, *[N] * 6)
        assert await box.dispatcher.run_once()
        order = box.sent()
        assert order == [N, N, N, B, N, N, N, B, *[B] * 10]
        assert bulk_within_share(order, 0.25)


async def test_bulk_beyond_its_share_waits_for_the_normal_messages_a_pass_did_not_read(
    tmp_path: Path,
) -> None:
    """A pass reads `batch_size` of each priority: more normal messages wait unread, so
    the bulk past its share stays queued instead of going on their capacity."""
    async with outbox(tmp_path, bulk_share=0.25, batch_size=4) as box:
        await box.queue(*[B] * 12, *[N] * 12)
        while await box.dispatcher.run_once():
            pass
        order = box.sent()
        assert len(order) == 24 and order.count(B) == 12
        assert bulk_within_share(order, 0.25)


async def test_bulk_uses_all_of_the_capacity_when_nothing_else_waits(tmp_path: Path) -> None:
    async with outbox(tmp_path, bulk_share=0.0) as box:
        await box.queue(*[B] * 10)
        assert await box.dispatcher.run_once()
        assert box.sent() == [B] * 10


async def test_no_share_means_bulk_goes_only_once_normal_is_done(tmp_path: Path) -> None:
    async with outbox(tmp_path, bulk_share=0.0) as box:
        await box.queue(B, B, N, N, H)
        assert await box.dispatcher.run_once()
        assert box.sent() == [H, N, N, B, B]


def test_an_incomplete_high_lane_holds_back_everything_below_it() -> None:
    lanes = {H: [["h"]], N: [["n"]], B: [["b"]]}
    assert interleave(lanes, 0.5, complete={N, B}) == [["h"]]
    assert interleave(lanes, 0.5, complete=set(Priority)) == [["h"], ["n"], ["b"]]


def test_bulk_requests_count_by_their_messages() -> None:
    """A batch of bulk is as many messages of the rate as it holds."""
    lanes = {N: [["n"]] * 4, B: [["b"] * 4, ["b"] * 4]}
    order = interleave(lanes, 0.5, complete=set(Priority))
    assert order == [["n"], ["n"], ["n"], ["n"], ["b"] * 4, ["b"] * 4]


# -- across passes, restarts and processes ------------------------------------------------


async def test_the_order_holds_across_a_restart(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    first = open_store(settings)
    await first.open()
    try:
        await first.enqueue([new(0, B), new(1, N), new(2, H)], {})
    finally:
        await first.close()
    async with outbox(tmp_path, bulk_share=0.0) as box:
        box.priorities = {number(n).lstrip("+"): p for n, p in enumerate((B, N, H))}
        assert [m.priority for m in await box.store.due_messages(time.time(), 10)] == [H, N, B]
        assert await box.dispatcher.run_once()
        assert box.sent() == [H, N, B]
        assert (await box.store.get_message("m2")).priority is H  # type: ignore[union-attr]


async def test_a_high_message_queued_mid_pass_by_another_process_does_not_wait_for_the_pass(
    tmp_path: Path,
) -> None:
    """No wake-up reaches this dispatcher: it finds the message by looking between lots,
    every poll_interval, and makes way for it."""
    async with outbox(tmp_path, rate=20.0, poll_interval=0.05) as box:
        await box.queue(*[B] * 60)  # three seconds at 20 a second, in one pass
        running = asyncio.create_task(box.dispatcher.run())
        try:
            await eventually(lambda: _sent_at_least(box, 22))  # the burst, and then some
            await box.queue(H, first=100)
            queued_at = time.monotonic()
            await eventually(lambda: _sent_at_least(box, 1, H))
            assert time.monotonic() - queued_at < 0.5
            assert box.sent().index(H) < 30
        finally:
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running


async def _sent_at_least(box: Outbox, count: int, priority: Priority | None = None) -> bool:
    return sum(1 for p in box.sent() if priority in (None, p)) >= count


# -- over HTTP ----------------------------------------------------------------------------


async def test_a_high_message_posted_mid_pass_goes_next_and_counters_stay_exact(
    tmp_path: Path,
) -> None:
    """A pass of 60 bulk messages at 20 a second lasts three seconds; a one-time code
    posted during it goes out within a fraction of that, and every message is counted
    once, as it would be without priorities."""
    async with rigging.connectel_setup(
        tmp_path, pattern="loop", options={"rate_per_second": 20}, concurrency=1
    ) as (gateway, fake):
        bulk = await gateway.send(
            to=[number(n) for n in range(60)], text="sale", account="conn", priority="bulk"
        )
        await eventually(lambda: _fake_sent(fake, 22))
        posted_at = time.monotonic()
        [code] = await gateway.send(to=number(99), text="1234", account="conn", priority="high")
        await eventually(lambda: _fake_has(fake, number(99)))
        assert time.monotonic() - posted_at < 0.5
        recipients = [s["recipient"] for s in fake.sent]
        assert recipients.index(number(99).lstrip("+")) < 30
        ids = [m["id"] for m in (*bulk, code)]
        assert set((await rigging.settle(gateway, fake, ids)).values()) == {"delivered"}
        counters = await rigging.account_counters(gateway, "conn")
        assert counters == rigging.tally(requests=61, accepted=61, delivered=61)
        rows = await db_rows(
            gateway.settings, "SELECT priority, COUNT(*) FROM messages GROUP BY priority"
        )
        assert sorted(rows) == [("bulk", 60), ("high", 1)]


async def _fake_sent(fake: FakeConnectel, count: int) -> bool:
    return len(fake.sent) >= count


async def _fake_has(fake: FakeConnectel, to: str) -> bool:
    return any(s["recipient"] == to.lstrip("+") for s in fake.sent)
