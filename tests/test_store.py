"""The stores (SQLite and PostgreSQL): reconciliation, counters and durability, against
real databases."""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import cast
from urllib.parse import urlsplit

import asyncpg
import pytest

from service.errors import Conflict, Unavailable
from service.model import (
    Account,
    AttemptResult,
    Counters,
    Decision,
    Event,
    InboundDecision,
    InboundFacts,
    InboundSms,
    MessageFilter,
    NewMessage,
    Report,
    ReportOutcome,
    Status,
)
from service.reconcile import match_key
from service.store import Store
from service.store import open_store as open_configured_store
from service.store.postgres import PostgresStore
from service.store.protocol import InboundPlanner
from service.store.sql import SqlStore, Tx
from tests.conftest import make_settings

FAR_FUTURE = "9999-01-01T00:00:00.000Z"
LONG_AGO = "2000-01-01T00:00:00.000Z"


def new_message(message_id: str = "m1", to: str = "+46700000001", segments: int = 1) -> NewMessage:
    return NewMessage(
        id=message_id,
        account="acc",
        to=to,
        text="hello",
        sender="smsgw",
        encoding="GSM-7",
        segments=segments,
    )


def accepted(message_id: str, *request_ids: str) -> AttemptResult:
    return AttemptResult(
        message_id,
        Decision.ACCEPTED,
        status=Status.SUBMITTED,
        request_ids=request_ids,
        keys=tuple(match_key(r, "", False) for r in request_ids),
        http_status=200,
        http_response="ok",
    )


async def open_store(path: Path, events: list[Event] | None = None) -> Store:
    store = open_configured_store(
        make_settings(path), events.extend if events is not None else None
    )
    await store.open()
    return store


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await open_store(tmp_path)
    await store.create_account(Account("acc", "sandbox", callback_secret="secret"))
    yield store
    await store.close()


async def submitted(store: Store, message_id: str = "m1", *request_ids: str) -> None:
    await store.enqueue([new_message(message_id)], {})
    assert await store.claim([message_id], time.time(), 60) == [message_id]
    await store.record_attempts([accepted(message_id, *(request_ids or ("R1",)))])


async def report(store: Store, request_id: str, status: Status) -> ReportOutcome:
    return await store.apply_report(
        "acc", Report(request_id, status), match_key(request_id, "", False)
    )


async def assert_counters_match_messages(store: Store) -> Counters:
    stats = await store.stats(LONG_AGO)
    derived = await store.derive_counters()
    assert dict(stats.accounts) == {k: v for k, v in derived.items() if not v.is_zero()}
    return stats.accounts.get("acc", Counters())


async def test_a_delivery_report_moves_the_message_and_its_counters(store: Store) -> None:
    await submitted(store, "m1", "R1")
    assert await report(store, "R1", Status.DELIVERED) is ReportOutcome.MATCHED
    message = await store.get_message("m1")
    assert message is not None and message.status is Status.DELIVERED
    counters = await assert_counters_match_messages(store)
    assert counters == Counters(requests=1, accepted=1, delivered=1)


async def test_a_report_that_raced_ahead_of_the_send_response_is_parked_then_applied(
    store: Store,
) -> None:
    await store.enqueue([new_message("m1")], {})
    await store.claim(["m1"], time.time(), 60)
    assert await report(store, "R1", Status.DELIVERED) is ReportOutcome.UNMATCHED
    assert (await store.stats(FAR_FUTURE)).unmatched == {"acc": 1}
    await store.record_attempts([accepted("m1", "R1")])
    message = await store.get_message("m1")
    assert message is not None and message.status is Status.DELIVERED
    assert (await store.stats(FAR_FUTURE)).unmatched == {}
    await assert_counters_match_messages(store)


async def test_a_parked_report_survives_a_restart(tmp_path: Path) -> None:
    store = await open_store(tmp_path)
    await store.create_account(Account("acc", "sandbox", callback_secret="s"))
    await store.enqueue([new_message("m1")], {})
    await store.claim(["m1"], time.time(), 60)
    await report(store, "R1", Status.EXPIRED)
    await store.close()
    store = await open_store(tmp_path)
    await store.record_attempts([accepted("m1", "R1")])
    message = await store.get_message("m1")
    await store.close()
    assert message is not None and message.status is Status.EXPIRED


async def test_a_duplicate_report_is_acknowledged_but_counted_once(store: Store) -> None:
    await submitted(store, "m1", "R1")
    assert await report(store, "R1", Status.UNDELIVERED) is ReportOutcome.MATCHED
    assert await report(store, "r1 ", Status.UNDELIVERED) is ReportOutcome.DUPLICATE
    counters = await assert_counters_match_messages(store)
    assert counters.undelivered == 1 and counters.pending == 0


async def test_a_late_report_is_kept_in_the_history_but_changes_nothing(
    store: Store,
) -> None:
    await submitted(store, "m1", "R1")
    await report(store, "R1", Status.DELIVERED)
    assert await report(store, "R1", Status.ENROUTE) is ReportOutcome.MATCHED
    assert await report(store, "R1", Status.EXPIRED) is ReportOutcome.MATCHED
    message = await store.get_message("m1")
    assert message is not None and message.status is Status.DELIVERED
    matched = [e for e in await store.message_events("m1") if e.event == "dlr.matched"]
    assert [(e.data["status"], e.data["applied"]) for e in matched] == [
        ("delivered", True),
        ("enroute", False),
        ("expired", False),
    ]


async def test_unmatched_reports_count_only_after_the_ttl(store: Store) -> None:
    await report(store, "NOBODY", Status.DELIVERED)
    assert (await store.stats(LONG_AGO)).unmatched == {}
    assert (await store.stats(FAR_FUTURE)).as_body()["accounts"]["acc"]["unmatched"] == 1


async def test_a_multipart_message_waits_for_every_part(store: Store) -> None:
    await submitted(store, "m1", "P1", "P2")
    await report(store, "P1", Status.DELIVERED)
    message = await store.get_message("m1")
    assert message is not None and message.status is Status.SUBMITTED
    await report(store, "P2", Status.DELIVERED)
    message = await store.get_message("m1")
    assert message is not None and message.status is Status.DELIVERED
    counters = await assert_counters_match_messages(store)
    assert counters.delivered == 1


async def test_a_refused_submission_counts_as_a_failed_request(store: Store) -> None:
    await store.enqueue([new_message("m1")], {})
    await store.claim(["m1"], time.time(), 60)
    await store.record_attempts(
        [
            AttemptResult(
                "m1", Decision.FAILED, error_code="104", error_text="bad login", http_status=200
            )
        ]
    )
    message = await store.get_message("m1")
    assert message is not None
    assert (message.status, message.error_code) == (Status.FAILED, "104")
    assert await assert_counters_match_messages(store) == Counters(requests=1, failed=1)


async def test_a_report_for_a_refused_message_with_an_id_matches_and_changes_nothing(
    store: Store,
) -> None:
    await store.enqueue([new_message("m1")], {})
    await store.claim(["m1"], time.time(), 60)
    refused = AttemptResult(
        "m1",
        Decision.FAILED,
        request_ids=("R9",),
        keys=(match_key("R9", "", False),),
        error_code="REJECTED_SENDER",
    )
    await store.record_attempts([refused])
    assert await report(store, "R9", Status.REJECTED) is ReportOutcome.MATCHED
    message = await store.get_message("m1")
    assert message is not None and message.status is Status.FAILED
    assert (await store.stats(FAR_FUTURE)).unmatched == {}
    assert await assert_counters_match_messages(store) == Counters(requests=1, failed=1)


async def test_only_one_claimant_wins_a_message(store: Store) -> None:
    await store.enqueue([new_message("m1")], {})
    first, second = await asyncio.gather(
        store.claim(["m1"], time.time(), 60), store.claim(["m1"], time.time(), 60)
    )
    assert sorted([first, second]) == [[], ["m1"]]
    assert await store.due_messages(time.time(), 10) == []


async def test_one_claim_of_many_wins_only_the_free_ones_in_the_order_asked(
    tmp_path: Path,
) -> None:
    events: list[Event] = []
    store = await open_store(tmp_path, events)
    try:
        await store.create_account(Account("acc", "sandbox", callback_secret="secret"))
        await store.enqueue([new_message(f"m{n}", f"+4670000000{n}") for n in range(5)], {})
        assert await store.claim(["m2"], time.time(), 60) == ["m2"]
        won = await store.claim(["m4", "m1", "m2", "m3", "m3", "gone"], time.time(), 60)
        assert won == ["m4", "m1", "m3"]
        sending = [e.message_id for e in events if e.event == "message.sending"]
        assert sending == ["m2", "m4", "m1", "m3"]
        assert [m.id for m in await store.due_messages(time.time(), 10)] == ["m0"]
    finally:
        await store.close()


async def test_one_record_of_many_results_concludes_each_as_alone(store: Store) -> None:
    """Accepted (its report parked before the answer), refused, retried and unknown
    sends recorded in one transaction: each as if recorded alone, counters exact."""
    ids = ["m1", "m2", "m3", "m4"]
    await store.enqueue([new_message(i, f"+4670000000{n}") for n, i in enumerate(ids)], {})
    assert await store.claim(ids, time.time(), 60) == ids
    assert await report(store, "R1", Status.DELIVERED) is ReportOutcome.UNMATCHED
    refused = AttemptResult(
        "m2", Decision.FAILED, request_ids=("R2",), keys=(match_key("R2", "", False),),
        error_code="1", requested=True,
    )  # fmt: skip
    retry = AttemptResult("m3", Decision.RETRY, retry_at=time.time() + 30, requested=True)
    unknown = AttemptResult("m4", Decision.UNKNOWN, error_code="outcome_unknown", requested=True)
    took = replace(accepted("m1", "R1"), requested=True)
    await store.record_attempts([took, refused, retry, unknown])
    found = {i: await store.get_message(i) for i in ids}
    assert {i: (m.status, m.attempts) for i, m in found.items() if m} == {
        "m1": (Status.DELIVERED, 1),
        "m2": (Status.FAILED, 1),
        "m3": (Status.SENDING, 1),
        "m4": (Status.SENDING, 1),
    }
    assert [m.id for m in await store.due_messages(time.time() + 31, 10)] == ["m3"]
    assert await report(store, "R2", Status.DELIVERED) is ReportOutcome.MATCHED
    counters = await assert_counters_match_messages(store)
    assert (counters.delivered, counters.failed) == (1, 1)


async def test_a_released_claim_is_due_again_with_no_attempt_counted(store: Store) -> None:
    await store.enqueue([new_message("m1"), new_message("m2", "+46700000002")], {})
    assert await store.claim(["m1", "m2"], time.time(), 60) == ["m1", "m2"]
    await store.release(["m2"])
    due = await store.due_messages(time.time(), 10)
    assert [(m.id, m.status, m.attempts) for m in due] == [("m2", Status.SENDING, 0)]
    assert await store.claim(["m1", "m2"], time.time(), 60) == ["m2"]


async def test_a_retry_waits_until_it_is_due(store: Store) -> None:
    await store.enqueue([new_message("m1")], {})
    await store.claim(["m1"], time.time(), 60)
    retry = AttemptResult("m1", Decision.RETRY, retry_at=time.time() + 30, requested=True)
    await store.record_attempts([retry])
    assert await store.due_messages(time.time(), 10) == []
    due = await store.due_messages(time.time() + 31, 10)
    assert [m.id for m in due] == ["m1"] and due[0].attempts == 1


@pytest.mark.parametrize("never", [math.inf, math.nan])
async def test_the_store_refuses_a_time_that_never_comes(store: Store, never: float) -> None:
    """The last guard: a non-finite number is refused, not stored; the claim stands."""
    await store.enqueue([new_message("m1")], {})
    await store.claim(["m1"], time.time(), 60)
    with pytest.raises(ValueError, match="non-finite"):
        await store.record_attempts([AttemptResult("m1", Decision.RETRY, retry_at=never)])
    message = await store.get_message("m1")
    assert message is not None and message.status is Status.SENDING
    assert await store.due_messages(time.time() + 10**9, 10) == []


async def test_an_expired_claim_becomes_outcome_unknown_and_is_never_resent(
    store: Store,
) -> None:
    await store.enqueue([new_message("m1")], {})
    await store.claim(["m1"], time.time() - 120, 60)
    assert await store.expire_claims(time.time()) == 1
    assert await store.due_messages(time.time() + 3600, 10) == []
    message = await store.get_message("m1")
    assert message is not None
    assert (message.status, message.error_code) == (Status.SENDING, "outcome_unknown")


async def test_an_idempotency_key_replays_the_first_response(store: Store) -> None:
    first = await store.enqueue([new_message("m1")], {"first": True}, ("k", "hash-a"))
    again = await store.enqueue([new_message("m2")], {"second": True}, ("k", "hash-a"))
    assert first == again == {"first": True}
    assert await store.get_message("m2") is None
    with pytest.raises(Conflict):
        await store.enqueue([new_message("m3")], {}, ("k", "hash-b"))


async def test_a_failing_write_does_not_spoil_the_others_committed_with_it(
    store: Store,
) -> None:
    results = await asyncio.gather(
        store.create_account(Account("acc", "sandbox", callback_secret="x")),
        store.enqueue([new_message("m1")], {}),
        return_exceptions=True,
    )
    assert isinstance(results[0], Conflict)
    assert await store.get_message("m1") is not None


async def test_a_failing_write_leaves_no_event_or_counter_among_those_committed_with_it(
    tmp_path: Path,
) -> None:
    seen: list[Event] = []
    store = await open_store(tmp_path, seen)
    sql_store = cast(SqlStore, store)

    async def counted(tx: Tx, name: str) -> None:
        await tx.event(name)
        tx.add_counters("acc", Counters(requests=1))

    async def failing(tx: Tx) -> None:
        await counted(tx, "test.failed")
        raise Conflict("this write fails after its event and counter change")

    results = await asyncio.gather(
        sql_store._write(lambda tx: counted(tx, "test.first")),
        sql_store._write(failing),
        sql_store._write(lambda tx: counted(tx, "test.last")),
        return_exceptions=True,
    )
    assert isinstance(results[1], Conflict)
    stored = await store.events_after(0, 100)
    stats = await store.stats("")
    await store.close()
    assert [e.event for e in stored] == ["test.first", "test.last"]
    assert [(e.event, e.id) for e in seen] == [(e.event, e.id) for e in stored]
    assert stored[0].id < stored[1].id
    assert stats.total.requests == 2


async def test_concurrent_reports_are_each_counted_exactly_once(store: Store) -> None:
    ids = [f"m{i}" for i in range(60)]
    await store.enqueue([new_message(i) for i in ids], {})
    await store.claim(ids, time.time(), 60)
    await store.record_attempts([accepted(i, f"R-{i}") for i in ids])
    statuses = [Status.DELIVERED, Status.UNDELIVERED, Status.ENROUTE]
    await asyncio.gather(*(report(store, f"R-{i}", statuses[n % 3]) for n, i in enumerate(ids * 2)))
    counters = await assert_counters_match_messages(store)
    assert (counters.delivered, counters.undelivered, counters.pending) == (20, 20, 20)


async def test_events_reach_the_sink_only_after_commit(tmp_path: Path) -> None:
    seen: list[Event] = []
    store = await open_store(tmp_path, seen)
    await store.create_account(Account("acc", "sandbox", callback_secret="s"))
    await store.enqueue([new_message("m1")], {})
    with pytest.raises(Conflict):
        await store.create_account(Account("acc", "sandbox", callback_secret="s"))
    await store.close()
    assert [e.event for e in seen] == ["account.created", "message.queued"]


def no_reply(facts: InboundFacts) -> InboundDecision:
    return InboundDecision(note="no_rule")


async def test_inbound_messages_are_stored_and_planned_once_per_provider_id(
    store: Store,
) -> None:
    sms = InboundSms("+46700000009", "+46700000000", "hi", provider_id="X1")
    planned: list[InboundFacts] = []

    def plan(facts: InboundFacts) -> InboundDecision:
        planned.append(facts)
        return no_reply(facts)

    first = await store.receive_inbound("acc", sms, "", plan)
    again = await store.receive_inbound("acc", sms, "", plan)
    assert first.id > 0 and again.id == 0 and len(planned) == 1
    [stored] = await store.list_inbound(10, None)
    assert (stored.text, stored.reply_note, stored.reply) == ("hi", "no_rule", None)


def reply_to(inbound_text: str, *, suppress: bool | None = None) -> InboundPlanner:
    """A planner that answers with one message to the sender and changes the list."""

    def plan(facts: InboundFacts) -> InboundDecision:
        return InboundDecision(
            suppress=suppress, reply=new_message(f"reply-{inbound_text}"), rule="r"
        )

    return plan


async def test_a_reply_is_queued_with_its_inbound_message_and_listed_with_it(
    store: Store,
) -> None:
    sms = InboundSms("+46700000001", "+46700000000", "hi", provider_id="X1")
    result = await store.receive_inbound("acc", sms, "", reply_to("hi"))
    [listed] = await store.list_inbound(10, None)
    assert result.decision.reply is not None and listed.reply is not None
    assert listed.reply.id == "reply-hi" == result.decision.reply.id
    assert [m.id for m in await store.due_messages(time.time(), 10)] == ["reply-hi"]
    again = await store.receive_inbound("acc", sms, "", reply_to("hi"))
    assert again.id == 0 and len(await store.due_messages(time.time(), 10)) == 1


async def test_facts_count_recent_replies_and_recognise_our_own_texts(store: Store) -> None:
    sms = InboundSms("+46700000001", "+46700000000", "hi", provider_id="X1")
    await store.receive_inbound("acc", sms, "", reply_to("hi"))
    seen: list[InboundFacts] = []

    def look(facts: InboundFacts) -> InboundDecision:
        seen.append(facts)
        return InboundDecision()

    echo = InboundSms("+46700000001", "+46700000000", "hello", provider_id="X2")
    await store.receive_inbound("acc", echo, "", look)
    await store.receive_inbound("acc", replace(echo, provider_id="X3"), FAR_FUTURE, look)
    assert [(f.recent_replies, f.echoes_auto_reply) for f in seen] == [(1, True), (0, False)]


async def test_a_message_queued_before_its_recipient_opted_out_fails_instead_of_going(
    store: Store,
) -> None:
    await store.enqueue([new_message("m1")], {})
    await store.suppress("+46700000001", "STOP", "acc")
    assert await store.claim(["m1"], time.time(), 60) == []
    message = await store.get_message("m1")
    assert message is not None
    assert (message.status, message.error_code) == (Status.FAILED, "opted_out")
    assert await store.due_messages(time.time(), 10) == []
    assert (await store.derive_counters())["acc"] == (await store.stats(LONG_AGO)).accounts["acc"]


async def test_an_opt_out_confirmation_is_spared_by_its_own_suppression(
    store: Store,
) -> None:
    stop = InboundSms("+46700000001", "+46700000000", "STOP", provider_id="X1")
    await store.receive_inbound("acc", stop, "", reply_to("stop", suppress=True))
    assert await store.suppressed(["+46700000001", "+46700000002"]) == {"+46700000001"}
    assert await store.claim(["reply-stop"], time.time(), 60) == ["reply-stop"]


async def test_a_reply_sent_inside_a_callback_answer_adopts_the_id_reports_use(
    store: Store,
) -> None:
    sms = InboundSms("+46700000001", "+46700000000", "hi", provider_id="X1")

    def inline(facts: InboundFacts) -> InboundDecision:
        return InboundDecision(reply=new_message("twiml"), inline=True, rule="r")

    await store.receive_inbound("acc", sms, "", inline)
    sending = await store.get_message("twiml")
    assert sending is not None and sending.status is Status.SENDING
    assert await store.due_messages(time.time(), 10) == []
    key = match_key("SM1", "", False)
    # The provider's first report arrives before smsgw knows the ID: parked, then adopted.
    report = Report("SM1", Status.DELIVERED)
    assert await store.apply_report("acc", report, key) is ReportOutcome.UNMATCHED
    assert await store.adopt_request_id("acc", "twiml", "SM1", key) is True
    assert await store.adopt_request_id("acc", "twiml", "SM2", key) is False
    done = await store.get_message("twiml")
    assert done is not None and (done.status, done.request_id) == (Status.DELIVERED, "SM1")


async def test_history_pages_newest_first(store: Store) -> None:
    await store.enqueue([new_message(f"m{i}") for i in range(5)], {})
    first = await store.list_messages(MessageFilter(), 2, None)
    rest = await store.list_messages(MessageFilter(), 10, first[-1].seq)
    assert [m.id for m in first + rest] == ["m4", "m3", "m2", "m1", "m0"]


# The central property, many messages against an independent model: test_store_counters.py.


# -- several processes on one database -----------------------------------------------


async def test_a_reader_never_passes_an_event_that_commits_after_it(store: Store) -> None:
    """A transaction that took its event id first and commits last: no reader may move
    its cursor past that id before the transaction is over."""
    sql_store = cast(SqlStore, store)
    [*_, newest] = await store.events_after(0, 1000)
    wrote, release = asyncio.Event(), asyncio.Event()

    async def slow(tx: Tx) -> None:
        await tx.event("test.slow")
        wrote.set()
        await release.wait()

    async def quick(tx: Tx) -> None:
        await tx.event("test.quick")

    slow_write = asyncio.create_task(sql_store._write(slow))
    await wrote.wait()
    quick_write = asyncio.create_task(sql_store._write(quick))
    await asyncio.sleep(0.3)  # time for the quick transaction to commit, where it can
    early = await store.events_after(newest.id, 100)
    release.set()
    await asyncio.gather(slow_write, quick_write)
    cursor = early[-1].id if early else newest.id
    late = await store.events_after(cursor, 100)
    assert sorted(e.event for e in early + late) == ["test.quick", "test.slow"]


async def test_a_long_transaction_in_another_database_does_not_hold_readers_back(
    store: Store, tmp_path: Path
) -> None:
    """On a server shared with other databases, their transactions cannot write our
    events, so they must not delay our readers."""
    url = make_settings(tmp_path).database_url
    if not url:
        pytest.skip("PostgreSQL only: SQLite has one writer and no other databases")
    [*_, newest] = await store.events_after(0, 1000)
    elsewhere = await asyncpg.connect(url.split("?")[0].rsplit("/", 1)[0] + "/postgres")
    try:
        async with elsewhere.transaction():
            await elsewhere.fetchval("SELECT pg_current_xact_id()")  # holds an id
            await cast(SqlStore, store)._write(lambda tx: tx.event("test.after"))
            seen = await store.events_after(newest.id, 100)
    finally:
        await elsewhere.close()
    assert [e.event for e in seen] == ["test.after"]


async def test_concurrent_writers_never_make_a_reader_skip_an_event(tmp_path: Path) -> None:
    writers = [await open_store(tmp_path) for _ in range(3)]
    await writers[0].create_account(Account("acc", "sandbox", callback_secret="s"))
    sizes = random.Random(1).choices(range(1, 300), k=40)
    read: list[int] = []
    done = asyncio.Event()

    async def reader() -> None:
        cursor = 0
        while True:
            finished = done.is_set()
            events = await writers[0].events_after(cursor, 10_000)
            read.extend(e.id for e in events)
            cursor = events[-1].id if events else cursor
            if finished and not events:
                return

    async def write(n: int, size: int) -> None:
        batch = [new_message(f"w{n}-{i}") for i in range(size)]
        await writers[n % len(writers)].enqueue(batch, {})

    reading = asyncio.create_task(reader())
    await asyncio.gather(*(write(n, size) for n, size in enumerate(sizes)))
    done.set()
    await reading
    stored = [e.id for e in await writers[0].events_after(0, 100_000)]
    for writer in writers:
        await writer.close()
    assert len(stored) == 1 + sum(sizes)
    assert read == stored


async def test_two_processes_reconcile_reports_racing_their_send_responses(
    tmp_path: Path,
) -> None:
    """One process records send answers while another takes the reports for them, some
    before and some after, all duplicated: one final status each, exact counters."""
    sender, receiver = await open_store(tmp_path), await open_store(tmp_path)
    await sender.create_account(Account("acc", "sandbox", callback_secret="s"))
    ids = [f"m{i}" for i in range(40)]
    await sender.enqueue([new_message(i, segments=2) for i in ids], {})
    assert sorted(await sender.claim(ids, time.time(), 60)) == sorted(ids)
    finals = [Status.DELIVERED, Status.UNDELIVERED]
    reports = [
        (f"{i}-{part}", finals[n % 2] if part else Status.DELIVERED)
        for n, i in enumerate(ids)
        for part in (0, 1)
    ] * 2
    random.Random(2).shuffle(reports)

    async def answer(message_id: str) -> None:
        await sender.record_attempts([accepted(message_id, f"{message_id}-0", f"{message_id}-1")])

    await asyncio.gather(
        *(answer(i) for i in ids),
        *(report(receiver, rid, status) for rid, status in reports),
    )
    counters = await assert_counters_match_messages(sender)
    assert (counters.delivered, counters.undelivered, counters.pending) == (20, 20, 0)
    assert (await sender.stats(FAR_FUTURE)).unmatched == {}
    for n, i in enumerate(ids):
        message = await receiver.get_message(i)
        assert message is not None and message.status is finals[n % 2]
    await sender.close()
    await receiver.close()


async def test_claims_from_several_processes_never_overlap(tmp_path: Path) -> None:
    workers = [await open_store(tmp_path) for _ in range(3)]
    await workers[0].enqueue([new_message(f"m{i}") for i in range(60)], {})
    due = [m.id for m in await workers[0].due_messages(time.time(), 100)]
    won = await asyncio.gather(
        *(
            w.claim(random.Random(n).sample(due, len(due)), time.time(), 60)
            for n, w in enumerate(workers)
        )
    )
    for worker in workers:
        await worker.close()
    claimed = [m for batch in won for m in batch]
    assert sorted(claimed) == sorted(due)


class Cuttable:
    """A TCP proxy to the database that a test can cut, as a network outage would."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.StreamWriter] = set()
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._link, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._links:
            writer.close()
        await self._server.wait_closed()

    async def _link(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*self._target)
        self._links |= {writer, upstream_writer}

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))


async def test_a_database_outage_is_unavailable_and_the_store_recovers_after_it(
    tmp_path: Path, store_kind: str
) -> None:
    if store_kind != "postgres":
        pytest.skip("SQLite has no server to lose; the locked-store callback tests cover it")
    url = urlsplit(make_settings(tmp_path).database_url)
    proxy = Cuttable(url.hostname or "127.0.0.1", url.port or 5432)
    await proxy.start()
    store = PostgresStore(url._replace(netloc=f"postgres@127.0.0.1:{proxy.port}").geturl())
    await store.open()
    try:
        await store.create_account(Account("acc", "sandbox", callback_secret="s"))
        await submitted(store, "m1", "R1")
        await proxy.cut()
        with pytest.raises(Unavailable):
            await report(store, "R1", Status.DELIVERED)
        with pytest.raises(Unavailable):
            await store.stats(LONG_AGO)
        assert await store.ping() is False
        await proxy.start()  # the network is back: the provider's retry goes through
        assert await report(store, "R1", Status.DELIVERED) is ReportOutcome.MATCHED
        await assert_counters_match_messages(store)
    finally:
        await store.close()
        await proxy.cut()
