"""Sends whose outcome is unknown (#16 item 4), over real HTTP against every provider's fake.

The fake takes the message and holds its answer past smsgw's request timeout, so the
outcome is unknown: never resent, concluded `expired` once its time runs out (counted
as accepted and undelivered), and the provider's report that comes after that is
matched to it (by our reference, or by recipient where the provider echoes nothing of
ours) and corrects it, with the counters equal to the table all along.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest

from service.model import Status
from service.reconcile import derive_counters
from tests import rig as rigging
from tests.conftest import Gateway, eventually
from tests.databases import db_rows
from tests.test_provider_contract import PROVIDERS

TO = "+46700000001"
QUICK: dict[str, Any] = {
    "request_timeout": 0.5,
    "lease_seconds": 2.0,  # the dispatcher's sweep, which concludes, runs every lease / 4
    "ambiguous_conclude_after": 1.0,
}


async def _status_once(gateway: Gateway, message_id: str, wanted: str) -> dict[str, Any]:
    async def reached() -> dict[str, Any]:
        detail = await gateway.message(message_id)
        return detail if detail["status"] == wanted else {}

    return await eventually(reached)


async def _counters_match_the_table(gateway: Gateway, account: str) -> dict[str, int]:
    """The account's counters, checked against the messages table, read independently."""
    counters = await rigging.account_counters(gateway, account)
    rows = await db_rows(gateway.settings, "SELECT status, COUNT(*) FROM messages GROUP BY status")
    implied = derive_counters((Status(status), count) for status, count in rows)
    assert counters == implied.as_dict()
    return counters


@pytest.mark.parametrize("provider", PROVIDERS.values(), ids=PROVIDERS.keys())
async def test_a_lost_send_answer_is_concluded_counted_and_its_late_report_matched(
    tmp_path: Any, provider: ModuleType
) -> None:
    spec: rigging.Ambiguous[Any] = provider.AMBIGUOUS
    fake = spec.fake()
    setattr(fake, spec.quiet, [])
    fake.hang_next, fake.hang_seconds = 1, 30.0
    async with rigging.provider_gateway(
        tmp_path, fake, spec.account, callbacks=spec.callbacks, **QUICK
    ) as (gateway, created):
        name = created["name"]
        [message] = await gateway.send(to=TO, text="was it sent?", account=name)
        concluded = await _status_once(gateway, message["id"], "expired")
        assert concluded["error"]["code"] == "outcome_unresolved"
        events = [e["event"] for e in concluded["events"]]
        assert events.index("message.outcome_unknown") < events.index("message.expired")
        assert await _counters_match_the_table(gateway, name) == rigging.tally(
            requests=1, accepted=1, undelivered=1
        )
        fake.release_hung()
        if spec.late_report is None:
            assert fake.requests_seen == 1
            return
        assert await spec.late_report(fake, TO.lstrip("+")) == 200
        await gateway.applied()
        corrected = await gateway.message(message["id"])
        assert corrected["status"] == "delivered"
        resolved = [e for e in corrected["events"] if e["event"] == "message.resolved"]
        assert [e["matched_by"] for e in resolved] == [spec.by]
        assert (await gateway.stats())["accounts"][name]["unmatched"] == 0
        assert await _counters_match_the_table(gateway, name) == rigging.tally(
            requests=1, accepted=1, delivered=1
        )
        assert fake.requests_seen == 1


async def test_a_report_two_unresolved_sends_could_fit_waits_unmatched(tmp_path: Any) -> None:
    async with rigging.connectel_setup(tmp_path, pattern="loop", **QUICK) as (gateway, fake):
        fake.dlr_plan, fake.hang_next, fake.hang_seconds = [], 2, 30.0
        sent = await gateway.send(to=[TO, TO], text="twice to one number", account="conn")
        for message in sent:
            await _status_once(gateway, message["id"], "expired")
        first = next(iter(fake.messages))
        assert await fake.push_dlr(first, TO.lstrip("+"), 1, "DELIVRD") == 200
        await gateway.applied()
        after = [await gateway.message(m["id"]) for m in sent]
        assert [m["status"] for m in after] == ["expired", "expired"]  # a guess is no match
        assert not [e for m in after for e in m["events"] if e["event"] == "message.resolved"]
        [parked] = await db_rows(
            gateway.settings, "SELECT message_id FROM reports WHERE request_id = ?", first
        )
        assert parked == (None,)
        assert await _counters_match_the_table(gateway, "conn") == rigging.tally(
            requests=2, accepted=2, undelivered=2
        )


async def test_a_concluded_send_keeps_its_status_for_a_report_that_is_not_final(
    tmp_path: Any,
) -> None:
    async with rigging.connectel_setup(tmp_path, **QUICK) as (gateway, fake):
        fake.dlr_plan, fake.hang_next, fake.hang_seconds = [], 1, 30.0
        [message] = await gateway.send(to=TO, text="late news", account="conn")
        await _status_once(gateway, message["id"], "expired")
        request_id = next(iter(fake.messages))
        assert await fake.push_dlr(request_id, TO.lstrip("+"), 0, "ENROUTE") == 200
        await gateway.applied()
        kept = await gateway.message(message["id"])
        assert kept["status"] == "expired"
        [matched] = [e for e in kept["events"] if e["event"] == "dlr.matched"]
        assert (matched["status"], matched["applied"]) == ("enroute", False)
        assert await fake.push_dlr(request_id, TO.lstrip("+"), 5, "UNDELIV") == 200
        await gateway.applied()
        failed = await gateway.message(message["id"])
        assert (failed["status"], failed["request_id"]) == ("undelivered", request_id)
        assert await _counters_match_the_table(gateway, "conn") == rigging.tally(
            requests=1, accepted=1, undelivered=1
        )
