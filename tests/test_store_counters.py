"""The counters, against a model of design.md section 2 written here and nowhere else.

Many messages per example, each with its own fate: accepted (in one to three parts),
refused (with or without a request ID), accepted after a retry, left ambiguous (the
request may have reached the provider; no answer recorded), scheduled for later,
cancelled while scheduled or queued, or expired before it could be sent. Cancelling a
message once it is claimed is refused and changes nothing. Their reports arrive
interleaved, in any order, duplicated, ahead of the send answer, and after a final
status. The store's status of every message, its counters and its unmatched count
must equal what the model says; so must each client's counters, for the messages sent
with that client's keys (others were sent with an admin token and count for no client).

The model imports nothing from `service.reconcile`: its ranking and its counter
arithmetic are its own, so a mistake shared by the store and reconcile shows here.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.model import Account, AttemptResult, Counters, Decision, Report, Status
from service.reconcile import match_key
from tests.test_store import FAR_FUTURE, accepted, new_message, open_store

# -- the model ------------------------------------------------------------------------

# design.md 2 and 6: scheduled < queued < sending < submitted < enroute < final; the
# first final wins.
MODEL_RANK = {
    "scheduled": -1,
    "queued": 0,
    "sending": 1,
    "submitted": 2,
    "enroute": 3,
    "delivered": 9,
    "undelivered": 9,
    "expired": 9,
    "rejected": 9,
    "failed": 9,
    "cancelled": 9,
}
DELIVERY_FAILURE = ("undelivered", "expired", "rejected")


def model_advance(current: str, reported: str) -> str:
    if MODEL_RANK[current] == 9 or MODEL_RANK[reported] <= MODEL_RANK[current]:
        return current
    return reported


def model_status(fate: str, parts: list[list[str]]) -> str:
    """A message's status once every report of each part (in arrival order) is in."""
    if fate in ("failed", "failed_with_id"):
        return "failed"
    if fate in ("scheduled", "cancelled", "expired"):
        return fate
    if fate == "ambiguous":
        return "sending"
    ends = []
    for reports in parts:
        status = "submitted"
        for reported in reports:
            status = model_advance(status, reported)
        ends.append(status)
    # design.md 2, multipart: failed when any part finally fails, delivered when every
    # part is delivered, otherwise as far along as its slowest undelivered part.
    failures = [s for s in ends if s in DELIVERY_FAILURE]
    if failures:
        return failures[0]
    if all(s == "delivered" for s in ends):
        return "delivered"
    return min((s for s in ends if s != "delivered"), key=MODEL_RANK.__getitem__)


def model_counters(statuses: list[str], fates: list[str]) -> dict[str, int]:
    """design.md 2: requests = accepted + failed (answers a provider gave), pending =
    accepted and not final; a message with no answer yet counts nowhere. design.md 6:
    a cancelled message counts only as cancelled. README: a message whose validity
    ran out before it was sent (its fate `expired`) shows expired but counts as failed,
    like a refusal: it was never accepted."""
    counters = dict.fromkeys(
        ("requests", "accepted", "failed", "delivered", "undelivered", "pending", "cancelled"),
        0,
    )
    for status, fate in zip(statuses, fates, strict=True):
        if status in ("scheduled", "queued", "sending"):
            continue
        if status == "cancelled":
            counters["cancelled"] += 1
            continue
        counters["requests"] += 1
        if fate == "expired":
            status = "failed"
        if status == "failed":
            counters["failed"] += 1
            continue
        counters["accepted"] += 1
        if status == "delivered":
            counters["delivered"] += 1
        elif status in DELIVERY_FAILURE:
            counters["undelivered"] += 1
        else:
            counters["pending"] += 1
    return counters


# -- the scenarios --------------------------------------------------------------------


@dataclass(frozen=True)
class Fate:
    kind: str
    """accepted, retried (accepted on its second try), failed, failed_with_id, ambiguous"""
    parts: int
    failure: str
    """The one kind of delivery failure this message's network reports, if any."""


@dataclass(frozen=True)
class Scenario:
    fates: list[Fate]
    arrival: list[tuple[int, int, str]]
    """(message, part, status) of each report, in arrival order."""
    answered_at: list[int]
    """For each message: how many reports arrived before its send answer was recorded."""
    owners: list[int | None]
    """For each message: the client (0 or 1) whose key sent it, or None for an admin."""


FATES = (
    "accepted",
    "retried",
    "failed",
    "failed_with_id",
    "ambiguous",
    "scheduled",
    "cancelled",
    "expired",
)
UNSENT = ("scheduled", "cancelled", "expired")
"""Fates that never reach a provider."""
REPORTED = ("submitted", "enroute", "delivered")


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    fates = []
    reports: list[tuple[int, int, str]] = []
    for m in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(FATES))
        parts = draw(st.integers(1, 3)) if kind in ("accepted", "retried") else 1
        failure = draw(st.sampled_from(DELIVERY_FAILURE))
        fates.append(Fate(kind, parts, failure))
        for part in range(parts):
            # Zero reports leaves the part pending; two finals are final-then-later.
            statuses = draw(st.lists(st.sampled_from((*REPORTED, failure)), max_size=3))
            reports += [(m, part, s) for s in statuses]
    reports += draw(st.lists(st.sampled_from(reports), max_size=4)) if reports else []
    arrival = list(draw(st.permutations(reports)))
    answered_at = [draw(st.integers(0, len(arrival))) for _ in fates]
    owners = [draw(st.sampled_from((0, 1, None))) for _ in fates]
    return Scenario(fates, arrival, answered_at, owners)


def expected(scenario: Scenario) -> tuple[list[str], dict[str, int], int]:
    """The model's status of each message, the account's counters and unmatched count."""
    statuses = []
    for m, fate in enumerate(scenario.fates):
        parts: list[list[str]] = [[] for _ in range(fate.parts)]
        for message, part, status in scenario.arrival:
            if message == m:
                parts[part].append(status)
        statuses.append(model_status(fate.kind, parts))
    # A report is stored once per (ID, status); one whose ID no answer ever recorded
    # stays unmatched.
    never_recorded = {
        m for m, f in enumerate(scenario.fates) if f.kind in ("failed", "ambiguous", *UNSENT)
    }
    unmatched = {(m, p, s) for m, p, s in scenario.arrival if m in never_recorded}
    counters = model_counters(statuses, [f.kind for f in scenario.fates])
    return statuses, counters, len(unmatched)


# -- the store against the model ------------------------------------------------------


def answer(fate: Fate, message_id: str, request_ids: list[str]) -> AttemptResult:
    if fate.kind in ("accepted", "retried"):
        return accepted(message_id, *request_ids)
    if fate.kind == "failed_with_id":
        return AttemptResult(
            message_id,
            Decision.FAILED,
            request_ids=tuple(request_ids),
            keys=tuple(match_key(r, "", False) for r in request_ids),
            error_code="REFUSED",
        )
    if fate.kind == "failed":
        return AttemptResult(message_id, Decision.FAILED, error_code="REFUSED")
    return AttemptResult(message_id, Decision.UNKNOWN, error_code="timeout")


_examples = itertools.count()


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(scenarios())
def test_counters_and_statuses_equal_an_independent_model_over_mixed_fates(
    tmp_path: Path, scenario: Scenario
) -> None:
    # One store for every example; each example has an account and IDs of its own.
    n = next(_examples)
    account = f"acc{n}"
    ids = [f"m{n}-{m}" for m in range(len(scenario.fates))]
    request_ids = [
        [f"P{n}-{m}-{p}" for p in range(fate.parts)] for m, fate in enumerate(scenario.fates)
    ]
    statuses, counters, unmatched = expected(scenario)
    clients = [f"client{n}-{c}" for c in range(2)]
    owners = [None if o is None else clients[o] for o in scenario.owners]
    client_counters = {
        name: model_counters(
            [s for s, o in zip(statuses, owners, strict=True) if o == name],
            [f.kind for f, o in zip(scenario.fates, owners, strict=True) if o == name],
        )
        for name in clients
    }

    async def run() -> None:
        store = await open_store(tmp_path)
        try:
            await store.create_account(Account(account, "sandbox", callback_secret="s"))
            now = time.time()
            messages = [
                replace(
                    new_message(i, to=f"+4670000{m:04d}", segments=f.parts),
                    account=account,
                    client=owners[m],
                    send_at=now + 3600 if f.kind == "scheduled" or m % 2 else None,
                    expires_at=now - 1 if f.kind == "expired" else None,
                )
                for m, (i, f) in enumerate(zip(ids, scenario.fates, strict=True))
            ]
            # Half of the messages are scheduled: the claim takes them as it takes
            # queued ones once they are due (here: asked for by id).
            await store.enqueue(messages, {})
            kinds = [f.kind for f in scenario.fates]
            for i, kind in zip(ids, kinds, strict=True):
                if kind == "cancelled":
                    assert await store.cancel(i) is None
            sent = [i for i, kind in zip(ids, kinds, strict=True) if kind not in UNSENT]
            claimed = [i for i, kind in zip(ids, kinds, strict=True) if kind != "scheduled"]
            assert sorted(await store.claim(claimed, time.time(), 60)) == sorted(sent)
            for i in sent:
                assert await store.cancel(i) is Status.SENDING
            retried = [i for i, f in zip(ids, scenario.fates, strict=True) if f.kind == "retried"]
            await store.record_attempts(
                [AttemptResult(i, Decision.RETRY, retry_at=time.time() - 1) for i in retried]
            )
            # Waiting to retry, a message has been sent once: too late to cancel.
            for i in retried:
                assert await store.cancel(i) is Status.SENDING
            assert sorted(await store.claim(retried, time.time(), 60)) == sorted(retried)
            for index in range(len(scenario.arrival) + 1):
                due = [m for m, at in enumerate(scenario.answered_at) if at == index]
                due = [m for m in due if scenario.fates[m].kind not in UNSENT]
                if due:
                    await store.record_attempts(
                        [answer(scenario.fates[m], ids[m], request_ids[m]) for m in due]
                    )
                if index < len(scenario.arrival):
                    m, part, status = scenario.arrival[index]
                    rid = request_ids[m][part]
                    await store.apply_report(
                        account, Report(rid, Status(status)), match_key(rid, "", False)
                    )
            stored = [await store.get_message(i) for i in ids]
            stats = await store.stats(FAR_FUTURE)
            derived = await store.derive_counters()
            derived_clients = await store.derive_counters("client")
        finally:
            await store.close()
        assert [m.status.value if m else None for m in stored] == statuses
        assert asdict(stats.accounts.get(account, Counters())) == counters
        assert stats.unmatched.get(account, 0) == unmatched
        assert stats.accounts.get(account, Counters()) == derived.get(account, Counters())
        for name in clients:
            assert asdict(stats.clients.get(name, Counters())) == client_counters[name]
            assert derived_clients.get(name, Counters()) == stats.clients.get(name, Counters())

    asyncio.run(run())
