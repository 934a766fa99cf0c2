"""The callback inbox at the store (#17): a callback's reports are stored first and
applied later, in batches, by one applier or several, and end exactly where applying
each report the moment it arrived (`apply_report`, one by one) ends.

Two stores take the same operations: the inbox store appends each callback to its
inbox and applies the inbox in batches when told; the direct store applies each report
as it arrives. Their messages, parts, counters and kept reports must then be equal.
Every test runs on SQLite and PostgreSQL unless it says otherwise.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.callback_inbox import Appender, Applier
from service.model import (
    Account,
    AttemptResult,
    Counters,
    Decision,
    Event,
    InboxEntry,
    InboxFilter,
    InboxState,
    KeyedReport,
    NewMessage,
    RawCallback,
    Report,
    Status,
)
from service.reconcile import FINAL, match_key
from service.settings import Settings
from service.store import Store, open_store
from tests.conftest import make_settings
from tests.databases import TestDatabase, db_count, db_rows
from tests.test_store import FAR_FUTURE, LONG_AGO

NUMBERS = ("+46700000101", "+46700000102", "+46700000103")
REPORTED = tuple(s for s in Status if s not in (Status.QUEUED, Status.SENDING))
"""What providers report: every status a send can reach after its answer."""
DRAIN_LIMIT = 10_000
"""More batches than any test's inbox holds callbacks: a drain that needs more is stuck."""

# -- two stores -------------------------------------------------------------------


@dataclass(frozen=True)
class Twins:
    inbox: Settings
    """The store that appends callbacks to its inbox and applies them later."""
    direct: Settings
    """The store that applies each report the moment it arrives."""


@pytest.fixture
def twins(tmp_path: Path, store_kind: str, request: pytest.FixtureRequest) -> Iterator[Twins]:
    """Two empty databases of this test's kind."""
    inbox = make_settings(tmp_path / "inbox")
    direct = make_settings(tmp_path / "direct")
    if store_kind == "sqlite":
        yield Twins(inbox, direct)
        return
    database: TestDatabase = request.getfixturevalue("postgres")
    schema, url = database.new_schema()
    try:
        yield Twins(inbox, replace(direct, database_url=url))
    finally:
        database.drop_schema(schema)


@asynccontextmanager
async def opened(config: Settings) -> AsyncIterator[Store]:
    store = open_store(config)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def drain(store: Store, batch: int = 5) -> None:
    for _ in range(DRAIN_LIMIT):
        if not await store.apply_inbox(batch):
            return
    raise AssertionError("the inbox never emptied")


# -- what a store ends with ----------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """Everything of one account that reports may change."""

    messages: list[tuple[Any, ...]]
    """(id, status, error code)"""
    parts: list[tuple[Any, ...]]
    """(message id, part, status)"""
    counters: Counters
    unmatched: int
    reports: list[tuple[Any, ...]]
    """(account, rid_key, rcpt_key, status, message id) of every report kept."""


async def outcome_of(store: Store, config: Settings, account: str) -> Outcome:
    """The account's state; its counters are checked against its messages first."""
    counters = (await store.stats(LONG_AGO)).accounts.get(account, Counters())
    assert counters == (await store.derive_counters()).get(account, Counters())
    return Outcome(
        await db_rows(
            config,
            "SELECT id, status, error_code FROM messages WHERE account = ? ORDER BY id",
            account,
        ),
        await db_rows(
            config,
            "SELECT message_id, part, status FROM message_parts WHERE account = ? "
            "ORDER BY message_id, part",
            account,
        ),
        counters,
        (await store.stats(FAR_FUTURE)).unmatched.get(account, 0),
        await db_rows(
            config,
            "SELECT account, rid_key, rcpt_key, status, message_id FROM reports "
            "WHERE account = ? ORDER BY rid_key, rcpt_key, status",
            account,
        ),
    )


async def newest_event(config: Settings) -> int:
    return await db_count(config, "SELECT COALESCE(MAX(id), 0) FROM events")


async def events_since(config: Settings, after: int) -> list[Event]:
    """Events committed after id `after`, read from the table: a store's own reader
    holds events back while any older transaction on the server still runs, other
    tests' included."""
    return [
        Event(name, ts, message_id, account, json.loads(data), event_id)
        for event_id, ts, name, message_id, account, data in await db_rows(
            config,
            "SELECT id, ts, event, message_id, account, data FROM events WHERE id > ? ORDER BY id",
            after,
        )
    ]


# -- scenarios -----------------------------------------------------------------------


@dataclass(frozen=True)
class Send:
    """One request to the provider: its messages (one per recipient, each in `parts`
    parts) are accepted by one answer. With `shared`, the provider gave each part one
    ID for all recipients, and reports are told apart by recipient."""

    shared: bool
    recipients: tuple[int, ...]
    """Indexes into NUMBERS; a shared send may carry one number twice."""
    parts: int

    def targets(self) -> int:
        """How many match keys its reports can carry."""
        carried = len(set(self.recipients)) if self.shared else len(self.recipients)
        return carried * self.parts


@dataclass(frozen=True)
class Conclude:
    send: int


@dataclass(frozen=True)
class Callback:
    reports: tuple[tuple[int, Status, str, bool], ...]
    """(target, status, error code, written otherwise): the last spells the request ID
    and the number as providers do when they echo them back."""


@dataclass(frozen=True)
class Resend:
    """The provider sends an earlier callback again (it took our 2xx for a failure)."""

    callback: int


@dataclass(frozen=True)
class Apply:
    limit: int


Operation = Conclude | Callback | Resend | Apply


@dataclass(frozen=True)
class Scenario:
    sends: list[Send]
    operations: list[Operation]


@st.composite
def sends(draw: st.DrawFn) -> Send:
    shared = draw(st.booleans())
    # A shared ID may cover one number twice (two messages of one text, batched).
    numbers = st.lists(st.integers(0, len(NUMBERS) - 1), min_size=1, max_size=3)
    return Send(shared, tuple(draw(numbers)), draw(st.integers(1, 2)))


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    drawn = draw(st.lists(sends(), min_size=1, max_size=3))
    targets = sum(s.targets() for s in drawn)
    report = st.tuples(
        st.integers(0, targets - 1),
        st.sampled_from(REPORTED),
        st.sampled_from(("", "E7")),
        st.booleans(),
    )
    operation: st.SearchStrategy[Operation] = st.one_of(
        st.builds(Conclude, st.integers(0, len(drawn) - 1)),
        st.builds(Callback, st.lists(report, min_size=1, max_size=3).map(tuple)),
        st.builds(Resend, st.integers(0, 20)),
        st.builds(Apply, st.integers(1, 5)),
    )
    return Scenario(drawn, draw(st.lists(operation, max_size=24)))


@dataclass(frozen=True)
class Target:
    request_id: str
    recipient: str
    shared: bool

    def report(self, status: Status, error_code: str, respelled: bool) -> KeyedReport:
        request_id, recipient = self.request_id, self.recipient
        if respelled:
            request_id, recipient = f" {request_id.lower()}", "00" + recipient.lstrip("+")
        return KeyedReport(
            Report(request_id, status, recipient, error_code),
            match_key(request_id, recipient, self.shared),
        )


class World:
    """A scenario's messages, answers and reports under names of their own (`n`), so
    that many examples can share one database."""

    def __init__(self, sends: Sequence[Send], n: int) -> None:
        self.account = f"acc{n}"
        self.messages: list[NewMessage] = []
        self.answers: list[list[AttemptResult]] = []
        self.targets: list[Target] = []
        for s, send in enumerate(sends):
            answers: list[AttemptResult] = []
            seen: set[tuple[str, str]] = set()
            for m, r in enumerate(send.recipients):
                message_id, to = f"m{n}-{s}-{m}", NUMBERS[r]
                self.messages.append(
                    NewMessage(message_id, self.account, to, "hi", "smsgw", "GSM-7", send.parts)
                )
                ids = [
                    f"S{n}-{s}-{p}" if send.shared else f"R{n}-{s}-{m}-{p}"
                    for p in range(send.parts)
                ]
                keys = tuple(match_key(i, to, send.shared) for i in ids)
                answers.append(
                    AttemptResult(
                        message_id,
                        Decision.ACCEPTED,
                        request_ids=tuple(ids),
                        keys=keys,
                        http_status=200,
                    )
                )
                for request_id, key in zip(ids, keys, strict=True):
                    if key not in seen:
                        seen.add(key)
                        self.targets.append(Target(request_id, to, send.shared))
            self.answers.append(answers)

    def entry(self, callback: Callback) -> InboxEntry:
        reports = tuple(
            self.targets[target].report(status, code, respelled)
            for target, status, code, respelled in callback.reports
        )
        body = ";".join(f"{k.report.request_id}={k.report.status}" for k in reports)
        return InboxEntry(
            self.account, reports, RawCallback("POST", "text/plain", body=body), time.time()
        )

    async def start(self, store: Store) -> None:
        """Its account, and its messages queued and claimed: sent, no answer yet."""
        await store.create_account(Account(self.account, "sandbox", callback_secret="s"))
        await store.enqueue(self.messages, {})
        ids = [m.id for m in self.messages]
        assert sorted(await store.claim(ids, time.time(), 600)) == sorted(ids)


async def play(
    world: World, operations: Sequence[Operation], inbox: Store | None, direct: Store | None
) -> None:
    """Run `operations` on the inbox store and on the direct store (either may be
    absent), then drain the inbox."""
    stores = [s for s in (inbox, direct) if s is not None]
    concluded: set[int] = set()
    callbacks: list[InboxEntry] = []
    for operation in operations:
        entry: InboxEntry | None = None
        match operation:
            case Conclude(send) if send not in concluded:
                concluded.add(send)
                for store in stores:
                    await store.record_attempts(world.answers[send])
            case Callback():
                entry = world.entry(operation)
                callbacks.append(entry)
            case Resend(n) if callbacks:
                entry = callbacks[n % len(callbacks)]
            case Apply(limit) if inbox is not None:
                await inbox.apply_inbox(limit)
        if entry is None:
            continue
        if inbox is not None:
            await inbox.append_inbox([entry])
        if direct is not None:
            for keyed in entry.reports:
                await direct.apply_report(world.account, keyed.report, keyed.key)
    if inbox is not None:
        await drain(inbox)


_examples = itertools.count()
EXAMPLES = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


# -- 1. batches from the inbox are reports one by one -------------------------------------


@EXAMPLES
@given(scenarios())
def test_applying_the_inbox_in_batches_ends_where_applying_each_report_on_arrival_ends(
    twins: Twins, scenario: Scenario
) -> None:
    """Any interleaving of send answers, callbacks (duplicated, resent, ahead of their
    send's answer, out of order, with conflicting final statuses) and batches of 1 to 5
    callbacks applied: the same statuses, parts, counters and kept reports."""
    world = World(scenario.sends, next(_examples))

    async def run() -> tuple[Outcome, Outcome]:
        async with opened(twins.inbox) as inbox, opened(twins.direct) as direct:
            for store in (inbox, direct):
                await world.start(store)
            await play(world, scenario.operations, inbox, direct)
            return (
                await outcome_of(inbox, twins.inbox, world.account),
                await outcome_of(direct, twins.direct, world.account),
            )

    from_inbox, one_by_one = asyncio.run(run())
    assert from_inbox == one_by_one


# -- 2. several appliers -------------------------------------------------------------


def stream(rng: random.Random, sends: int) -> Scenario:
    """Sends and their callbacks, with no two final statuses that could disagree about
    a message: each send's reports end either delivered or in the send's one kind of
    failure, so that the order appliers take them in cannot matter. Half the sends are
    answered before any report, the rest somewhere in the stream."""
    drawn = [
        Send(shared, tuple(rng.sample(range(len(NUMBERS)), k=rng.randint(1, 3))), rng.randint(1, 2))
        for shared in (rng.random() < 0.5 for _ in range(sends))
    ]
    reports: list[tuple[int, Status, str, bool]] = []
    first = 0
    for send in drawn:
        failure = rng.choice((Status.UNDELIVERED, Status.EXPIRED, Status.REJECTED))
        for target in range(first, first + send.targets()):
            final = rng.choice((Status.DELIVERED, failure))
            for status in rng.sample((Status.ENROUTE, final), k=rng.randint(1, 2)):
                reports += [
                    (target, status, status.value.upper(), rng.random() < 0.3)
                ] * rng.randint(1, 2)
        first += send.targets()
    rng.shuffle(reports)
    operations: list[Operation] = []
    while reports:
        size = rng.randint(1, 4)
        operations.append(Callback(tuple(reports[:size])))
        reports = reports[size:]
    for answered in range(sends):
        at = 0 if answered % 2 == 0 else rng.randint(0, len(operations))
        operations.insert(at, Conclude(answered))
    return Scenario(drawn, operations)


async def test_several_appliers_on_postgres_apply_each_callback_exactly_once(
    twins: Twins, store_kind: str
) -> None:
    """Three applier loops in two processes (two stores over one database) take the
    inbox while callbacks and send answers still arrive: every callback is applied,
    once, and the end is that of one by one."""
    if store_kind != "postgres":
        pytest.skip("SQLite has one writer: there is no second applier to race")
    scenario = stream(random.Random(17), sends=24)
    world = World(scenario.sends, 0)
    arriving = asyncio.Event()
    deadline = time.monotonic() + 60

    async with (
        opened(twins.inbox) as first,
        opened(twins.inbox) as second,
        opened(twins.inbox) as receiver,
        opened(twins.direct) as direct,
    ):
        for store in (receiver, direct):
            await world.start(store)

        async def receive() -> None:
            for operation in scenario.operations:
                match operation:
                    case Conclude(send):
                        await receiver.record_attempts(world.answers[send])
                    case Callback():
                        await receiver.append_inbox([world.entry(operation)])
                await asyncio.sleep(0)
            arriving.set()

        async def applier(store: Store, limit: int) -> None:
            while time.monotonic() < deadline:
                done = arriving.is_set()
                if not await store.apply_inbox(limit) and done:
                    return
                await asyncio.sleep(0)
            raise AssertionError("the appliers did not empty the inbox in time")

        await asyncio.gather(receive(), applier(first, 3), applier(second, 5), applier(first, 1))
        await play(world, scenario.operations, None, direct)
        from_inbox = await outcome_of(receiver, twins.inbox, world.account)
        events = await events_since(twins.inbox, 0)
        one_by_one = await outcome_of(direct, twins.direct, world.account)

    assert from_inbox == one_by_one
    pending = "SELECT COUNT(*) FROM callback_inbox WHERE applied_at IS NULL"
    assert await db_count(twins.inbox, pending) == 0
    # A callback applied twice would repeat each of its reports as a duplicate.
    arrived = [
        k for op in scenario.operations if isinstance(op, Callback) for k in world.entry(op).reports
    ]
    distinct = {(k.key, k.report.status) for k in arrived}
    duplicates = [e for e in events if e.event == "dlr.duplicate"]
    assert (len(from_inbox.reports), len(duplicates)) == (
        len(distinct),
        len(arrived) - len(distinct),
    )
    finals = [e.message_id for e in events if e.event in {f"message.{s.value}" for s in FINAL}]
    assert sorted(finals) == sorted(set(finals))


# -- 3. replay -------------------------------------------------------------------------


@settings(EXAMPLES, max_examples=25)
@given(scenarios(), st.data())
def test_replaying_callbacks_already_applied_changes_nothing(
    twins: Twins, scenario: Scenario, data: st.DataObject
) -> None:
    """Any range of applied callbacks, replayed: each of their reports is a duplicate,
    and nothing else moves."""
    world = World(scenario.sends, next(_examples))
    config = twins.inbox

    async def run() -> None:
        async with opened(config) as inbox:
            await world.start(inbox)
            await play(world, scenario.operations, inbox, None)
            ids = await inbox.inbox_ids(InboxFilter(account=world.account), 0, 1000, 0.0)
            if not ids:
                return
            start = data.draw(st.integers(0, len(ids) - 1))
            stop = data.draw(st.integers(start + 1, len(ids)))
            chosen = InboxFilter(ids=tuple(ids[start:stop]))
            listed = await inbox.list_inbox(chosen, 0, 1000, 0.0)
            before = await outcome_of(inbox, config, world.account)
            cursor = await newest_event(config)
            assert await inbox.replay_inbox(chosen.ids) == len(chosen.ids)
            assert await outcome_of(inbox, config, world.account) == before
            again = await inbox.list_inbox(chosen, 0, 1000, 0.0)
            assert [(r.state, r.reports) for r in again] == [(r.state, r.reports) for r in listed]
            events = await events_since(config, cursor)
            replayed = sum(len(r.reports) for r in listed)
            assert [e.event for e in events] == ["dlr.duplicate"] * replayed

    asyncio.run(run())


async def test_a_report_parked_for_a_part_recorded_without_it_is_applied_by_replay(
    tmp_path: Path,
) -> None:
    """A send answer recorded by a path that did not apply the reports parked for it
    (its part written straight into the table here): replaying the callback matches the
    parked report, moves the message with its counters, and files the report under it."""
    config = make_settings(tmp_path)
    world = World([Send(shared=False, recipients=(0,), parts=1)], 0)
    [answer] = world.answers[0]
    async with opened(config) as store:
        await world.start(store)
        await store.append_inbox([world.entry(Callback(((0, Status.DELIVERED, "", False),)))])
        assert await store.apply_inbox(5) == 1
        parked = InboxFilter(state=InboxState.PARKED)
        [inbox_id] = await store.inbox_ids(parked, 0, 10, 0.0)
        await db_rows(
            config,
            "INSERT INTO message_parts (message_id, part, account, request_id, rid_key, "
            "rcpt_key, status) VALUES (?, 0, ?, ?, ?, ?, ?)",
            answer.message_id,
            world.account,
            answer.request_ids[0],
            *answer.keys[0],
            Status.SUBMITTED.value,
        )
        cursor = await newest_event(config)

        assert await store.replay_inbox([inbox_id]) == 1

        replayed = await outcome_of(store, config, world.account)
        [record] = await store.list_inbox(InboxFilter(ids=(inbox_id,)), 0, 10, 0.0)
        events = await events_since(config, cursor)
        cursor = await newest_event(config)
        assert await store.replay_inbox([inbox_id]) == 1
        assert await outcome_of(store, config, world.account) == replayed
        again = [e.event for e in await events_since(config, cursor)]

    assert replayed.messages == [(answer.message_id, "delivered", "")]
    assert replayed.parts == [(answer.message_id, 0, "delivered")]
    assert replayed.counters == Counters(requests=1, accepted=1, delivered=1)
    assert (replayed.unmatched, replayed.reports) == (
        0,
        [(world.account, *answer.keys[0], "delivered", answer.message_id)],
    )
    assert record.state is InboxState.APPLIED
    assert [(r.outcome, r.message_id) for r in record.reports] == [("matched", answer.message_id)]
    matched = [e.data["parked"] for e in events if e.event == "dlr.matched"]
    assert (matched, [e.event for e in events if e.event.startswith("message.")]) == (
        [True],
        ["message.delivered"],
    )
    assert again == ["dlr.duplicate"]


# -- one number twice under one shared ID -------------------------------------------


async def test_a_report_ahead_of_an_answer_naming_one_number_twice_reaches_both_messages(
    tmp_path: Path,
) -> None:
    """A provider that gives one ID to all recipients of a request, sent one number
    twice (two messages of one text, batched together): its report for that number
    moves both messages, whether it came before the answer or after."""
    config = make_settings(tmp_path)
    world = World([Send(shared=True, recipients=(0, 0), parts=1), Send(True, (0, 0), 1)], 0)
    async with opened(config) as store:
        await world.start(store)
        await store.record_attempts(world.answers[0])
        for target in (0, 1):  # after its answer, then ahead of it
            [keyed] = world.entry(Callback(((target, Status.ENROUTE, "", False),))).reports
            await store.apply_report(world.account, keyed.report, keyed.key)
        await store.record_attempts(world.answers[1])
        outcome = await outcome_of(store, config, world.account)
    assert outcome.messages == [(m.id, "enroute", "") for m in world.messages]


# -- the applier's schedule and the appender's groups (service/callback_inbox.py) --------


class _CountingStore:
    """What the applier and the appender ask of a store, recorded; every batch finds
    as many callbacks as it asks for, until `waiting` runs out."""

    def __init__(self, waiting: int = 10_000) -> None:
        self.waiting = waiting
        self.asked: list[int] = []
        self.groups: list[int] = []

    async def apply_inbox(self, limit: int) -> int:
        self.asked.append(limit)
        taken = min(limit, self.waiting)
        self.waiting -= taken
        return taken

    async def inbox_depth(self) -> tuple[int, float | None]:
        return self.waiting, None

    async def prune_inbox(self, before: float) -> int:
        return 0

    async def append_inbox(self, entries: Sequence[Any]) -> None:
        self.groups.append(len(entries))


@pytest.fixture
def rests(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The applier's rests, recorded instead of slept."""
    slept: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(seconds: float) -> None:
        if seconds:
            slept.append(seconds)
        await real_sleep(0)

    monkeypatch.setattr("service.callback_inbox.asyncio.sleep", sleep)
    return slept


def _applier(store: _CountingStore, **options: Any) -> Applier:
    return Applier(store, 500, 3600.0, **options)  # type: ignore[arg-type]


async def test_an_idle_process_applies_full_batches_without_rest(rests: list[float]) -> None:
    store = _CountingStore()
    applier = _applier(store, busy_share=0.2)
    assert await applier.run_once()
    assert store.asked == [500] and rests == []


async def test_while_callbacks_arrive_the_applier_takes_small_batches_and_rests(
    rests: list[float],
) -> None:
    store = _CountingStore()
    applier = _applier(store, busy_share=0.2)
    applier.appended(1)
    assert await applier.run_once()
    assert store.asked == [Applier.BUSY_BATCH]
    [rest] = rests
    assert rest > 0  # four times the batch's own time: a fifth of the loop at most


async def test_a_backlog_past_a_quarter_of_max_depth_is_applied_without_rest(
    rests: list[float],
) -> None:
    store = _CountingStore()
    applier = _applier(store, busy_share=0.2, max_depth=100)
    applier.appended(30)
    assert await applier.run_once()
    assert store.asked == [Applier.BUSY_BATCH] and rests == []


async def test_resting_under_load_ends_after_half_of_max_lag(rests: list[float]) -> None:
    store = _CountingStore()
    applier = _applier(store, busy_share=0.2, max_lag=0.0)
    applier.appended(1)
    assert await applier.run_once()
    assert store.asked == [Applier.BUSY_BATCH] and rests == []


async def test_appends_arriving_together_share_one_commit() -> None:
    store = _CountingStore()
    appender = Appender(store, lambda count: None)  # type: ignore[arg-type]
    entry = InboxEntry("a", (), RawCallback("POST"), 0.0)
    await asyncio.gather(*(appender.append(entry) for _ in range(20)))
    assert store.groups == [20]
