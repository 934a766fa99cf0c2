"""The dispatcher and the whole loop against a fake Connectel over real HTTP.

Each test runs smsgw and the fake on loopback; the fake pushes its DLRs to the
callback URL smsgw gives for the account, as Connectel does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse

from service.accounts import AccountDirectory
from service.dispatcher import Dispatcher
from service.metrics import Metrics
from service.model import NewMessage, Status
from service.reconcile import derive_counters
from service.settings import Settings
from service.store import open_store
from service.transport import provider_client
from tests import rig as rigging
from tests.conftest import Gateway, eventually, make_settings, running_gateway
from tests.databases import db_count, db_dump, db_rows
from tests.fake_connectel import FakeConnectel, _read_fields
from tests.fake_routemobile import FakeRouteMobile
from tests.servers import serve
from tests.test_web import sign_in


async def table_counters(gateway: Gateway) -> dict[str, int]:
    """The counters implied by the messages table, read straight from the database."""
    rows = await db_rows(
        gateway.settings,
        "SELECT status, COUNT(*) FROM messages WHERE account = 'conn' GROUP BY status",
    )
    return derive_counters((Status(s), n) for s, n in rows).as_dict()


async def parked_reports(gateway: Gateway) -> int:
    return await db_count(gateway.settings, "SELECT COUNT(*) FROM reports WHERE message_id IS NULL")


async def conn_counters(gateway: Gateway) -> dict[str, int]:
    counters = await rigging.account_counters(gateway, "conn")
    assert counters == await table_counters(gateway)
    return counters


async def test_a_batch_account_sends_alike_messages_in_one_bulk_request(tmp_path: Path) -> None:
    async with rigging.connectel_setup(tmp_path) as (gateway, fake):
        sent = await gateway.send(
            to=["+46700000001", "+46700000002", "+46700000003"], text="bulk", account="conn"
        )
        await rigging.settle(gateway, fake, [m["id"] for m in sent])
        assert len(fake.sent) == 1 and fake.sent[0]["bulk"] is True
        assert await conn_counters(gateway) == rigging.tally(requests=3, accepted=3, delivered=3)


async def test_a_loop_account_sends_one_request_per_message(tmp_path: Path) -> None:
    async with rigging.connectel_setup(tmp_path, pattern="loop") as (gateway, fake):
        sent = await gateway.send(to=["+46700000001", "+46700000002"], text="loop", account="conn")
        await rigging.settle(gateway, fake, [m["id"] for m in sent])
        # Side by side, so in either order.
        assert fake.requests_seen == 2
        assert sorted(s["recipient"] for s in fake.sent) == ["46700000001", "46700000002"]


async def test_reports_racing_ahead_of_the_send_answer_are_applied(tmp_path: Path) -> None:
    async with rigging.connectel_setup(tmp_path) as (gateway, fake):
        fake.dlr_before_response = True
        sent = await gateway.send(to=["+46700000001", "+46700000002"], text="race", account="conn")
        statuses = await rigging.settle(gateway, fake, [m["id"] for m in sent])
        assert set(statuses.values()) == {"delivered"}
        assert all(code == 200 for code in fake.dlr_acks)
        assert await parked_reports(gateway) == 0
        assert (await conn_counters(gateway))["delivered"] == 2


async def test_duplicated_and_shuffled_reports_give_exact_counters(tmp_path: Path) -> None:
    outcomes = {"1": (1, "DELIVRD"), "2": (5, "UNDELIV"), "3": (8, "EXPIRED"), "4": (2, "REJECTD")}
    async with rigging.connectel_setup(tmp_path) as (gateway, fake):
        fake.dlr_plan_for = lambda number: [(0, "ENROUTE"), outcomes[number[-1]]]
        fake.duplicates, fake.shuffle = 2, True
        numbers = [f"+4670000{n:03d}{d}" for n in range(5) for d in "1234"]
        expected = {"1": "delivered", "2": "undelivered", "3": "expired", "4": "rejected"}
        sent = await rigging.settle_mixed(gateway, fake, "conn", numbers, expected)
        assert await conn_counters(gateway) == rigging.tally(
            requests=20, accepted=20, delivered=5, undelivered=15
        )
        rejected = await gateway.message(next(m["id"] for m in sent if m["to"].endswith("4")))
        assert rejected["error"] == {"code": "2", "message": "REJECTD"}


async def test_reports_may_arrive_as_form_posts_or_get_queries(tmp_path: Path) -> None:
    async with rigging.connectel_setup(tmp_path) as (gateway, fake):
        for fmt in ("form", "get"):
            fake.dlr_format = fmt
            [message] = await gateway.send(to="+46700000001", text=fmt, account="conn")
            assert (await rigging.settle(gateway, fake, [message["id"]]))[
                message["id"]
            ] == "delivered"


async def test_answers_proving_nothing_was_taken_are_retried_with_backoff_until_accepted(
    tmp_path: Path,
) -> None:
    async with rigging.connectel_setup(tmp_path) as (gateway, fake):
        fake.fail_next = [503, 429]
        _, detail = await rigging.send_one(gateway, fake, "conn", "+46700000001", "retry")
        assert detail["status"] == "delivered" and detail["attempts"] == 3
        retries = [e for e in detail["events"] if e["event"] == "message.retry"]
        assert [e["http_status"] for e in retries] == [503, 429]
        assert fake.requests_seen == 3 and len(fake.sent) == 1


@pytest.mark.parametrize("status", [500, 502, 504])
async def test_a_server_error_that_may_hide_a_sent_message_is_never_resent(
    tmp_path: Path, status: int
) -> None:
    async with rigging.connectel_setup(tmp_path) as (gateway, fake):
        fake.fail_next = [status]
        [message] = await gateway.send(to="+46700000001", text="taken?", account="conn")

        async def concluded() -> dict[str, Any]:
            detail = await gateway.message(message["id"])
            return detail if detail["error"] else {}

        detail = await eventually(concluded)
        assert (detail["status"], detail["error"]["code"]) == ("sending", str(status))
        assert "message.outcome_unknown" in [e["event"] for e in detail["events"]]
        # A later message goes out and settles: the dispatcher has passed over the
        # outbox since, and did not send the first one again.
        _, later = await rigging.send_one(gateway, fake, "conn", "+46700000002", "later")
        assert later["status"] == "delivered"
        assert fake.requests_seen == 2 and detail["attempts"] == 1


async def test_a_429_waits_at_least_its_retry_after(tmp_path: Path) -> None:
    async with rigging.connectel_setup(tmp_path) as (gateway, fake):
        fake.fail_next = [429]
        started = time.monotonic()
        [message] = await gateway.send(to="+46700000001", text="slow down", account="conn")
        await rigging.settle(gateway, fake, [message["id"]])
        assert time.monotonic() - started >= 1.0


def strict_json(text: str) -> Any:
    """JSON as RFC 8259 has it: `NaN` and `Infinity`, which Python would read, fail."""

    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize(
    "hint",
    ["inf", "nan", "-5", "1e309", "1e300", "99999999999999999999", "9" * 5000, "soon",
     "Fri, 31 Dec 9999 23:59:59 GMT"],
)  # fmt: skip
async def test_a_429s_retry_after_is_held_within_bounds_and_every_view_stays_json(
    tmp_path: Path, hint: str
) -> None:
    """Whatever a provider's Retry-After says, the retry comes due no later than
    `dispatch.retry_after_max`, and the message, its events and the console still read."""
    async with rigging.connectel_setup(
        tmp_path, retry_after_min=0.05, retry_after_max=0.3
    ) as (gateway, fake):  # fmt: skip
        fake.fail_next, fake.retry_after = [429], hint
        asked = time.time()
        status, detail = await rigging.send_one(gateway, fake, "conn", "+46700000001", "hint")
        assert status == "delivered" and fake.requests_seen == 2
        [retry] = [e for e in detail["events"] if e["event"] == "message.retry"]
        assert asked <= retry["retry_at"] <= time.time() + gateway.settings.retry_after_max
        views = [
            await gateway.api.get(f"/v1/messages/{detail['id']}"),
            await gateway.api.get("/v1/messages"),
        ]
        assert all(strict_json(view.text) for view in views if view.status_code == 200)
        assert [view.status_code for view in views] == [200, 200]
        events = await gateway.api.get("/v1/events", params={"limit": 1000})
        assert [strict_json(line) for line in events.text.splitlines()]
        async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as console:
            await sign_in(gateway, console)
            page = await console.get(f"/console/messages/{detail['id']}")
        assert page.status_code == 200


async def test_one_accounts_requests_run_side_by_side_up_to_the_concurrency(
    tmp_path: Path,
) -> None:
    async with rigging.connectel_setup(tmp_path, pattern="loop", concurrency=3) as (gateway, fake):
        fake.hang_next, fake.hang_seconds = 4, 30.0
        sent = await gateway.send(
            to=[f"+4670000000{n}" for n in range(1, 5)], text="side by side", account="conn"
        )

        async def arrived(count: int) -> bool:
            return len(fake.sent) == count

        await eventually(lambda: arrived(3))
        await asyncio.sleep(0.3)
        assert len(fake.sent) == 3  # the fourth waits for a free slot
        fake.release_hung()
        await eventually(lambda: arrived(4))
        fake.release_hung()
        statuses = await rigging.settle(gateway, fake, [m["id"] for m in sent])
        assert set(statuses.values()) == {"delivered"} and fake.requests_seen == 4


async def test_a_timeout_after_sending_is_never_resent_and_the_reports_it_raced_resolve_it(
    tmp_path: Path,
) -> None:
    async with rigging.connectel_setup(tmp_path, request_timeout=0.5) as (gateway, fake):
        fake.hang_next, fake.hang_seconds = 1, 3.0
        [message] = await gateway.send(to="+46700000001", text="lost?", account="conn")
        # The fake pushes its reports while it holds the answer back: they wait as
        # unmatched until the timeout makes the send ambiguous, then find it by recipient.
        detail = await rigging.settled_messages(gateway, [message["id"]], fake)
        events = [e["event"] for e in detail[message["id"]]["events"]]
        assert detail[message["id"]]["status"] == "delivered"
        assert events.index("message.outcome_unknown") < events.index("message.resolved")
        fake.release_hung()
        _, later = await rigging.send_one(gateway, fake, "conn", "+46700000002", "later")
        assert later["status"] == "delivered"
        assert len(fake.sent) == 2 and fake.requests_seen == 2


async def test_a_refused_connection_is_retried_then_fails(tmp_path: Path) -> None:
    async with rigging.connectel_setup(tmp_path, max_attempts=2) as (gateway, _fake):
        await gateway.api.patch("/v1/accounts/conn", json={"base_url": "http://127.0.0.1:9"})
        [message] = await gateway.send(to="+46700000001", text="nobody home", account="conn")

        async def failed() -> dict[str, Any]:
            detail = await gateway.message(message["id"])
            return detail if detail["status"] == "failed" else {}

        detail = await eventually(failed)
        assert detail["error"]["code"] == "connect_error" and detail["attempts"] == 2


async def test_a_wrong_token_fails_the_message_as_an_account_error(tmp_path: Path) -> None:
    async with rigging.connectel_setup(tmp_path) as (gateway, fake):
        fake.token = "rotated"
        status, detail = await rigging.send_one(gateway, fake, "conn", "+46700000001", "denied")
        assert status == "failed" and detail["http_status"] == 401
        assert (await conn_counters(gateway))["failed"] == 1


async def test_the_stored_provider_response_never_holds_the_token(tmp_path: Path) -> None:
    async with rigging.connectel_setup(tmp_path, pattern="loop") as (gateway, fake):
        _, detail = await rigging.send_one(gateway, fake, "conn", "+46700000001", "secret?")
        assert detail["http_response"] and rigging.CONNECTEL_TOKEN not in str(detail)
        # Not even the accounts table holds it: credentials are sealed at rest.
        assert rigging.CONNECTEL_TOKEN not in await db_dump(gateway.settings)


async def test_the_account_rate_limit_spaces_requests(tmp_path: Path) -> None:
    async with rigging.connectel_setup(
        tmp_path, pattern="loop", options={"rate_per_second": 5}
    ) as (
        gateway,
        fake,
    ):
        started = time.monotonic()
        sent = await gateway.send(
            to=[f"+4670000000{n}" for n in range(8)], text="paced", account="conn"
        )
        await rigging.settle(gateway, fake, [m["id"] for m in sent])
        assert time.monotonic() - started >= 0.5  # 8 messages at 5/s with a burst of 5


async def test_inbound_messages_from_connectel_are_listed(tmp_path: Path) -> None:
    async with rigging.connectel_setup(tmp_path) as (gateway, fake):
        assert await fake.push_inbound("35890010000", "3581000000", "Hi there", "RIN1") == 200
        assert await rigging.listed_inbound(gateway) == ("+35890010000", "Hi there", "conn")


@asynccontextmanager
async def two_connectel_accounts(
    tmp_path: Path,
) -> AsyncIterator[tuple[Gateway, FakeConnectel, FakeConnectel]]:
    """ "primary" (priority 1) and "backup" (priority 2), each with its own fake Connectel."""
    primary, backup = FakeConnectel("primary-token"), FakeConnectel("backup-token")
    async with (
        serve(primary.app) as primary_url,
        serve(backup.app) as backup_url,
        running_gateway(tmp_path) as gateway,
    ):
        for name, fake, url in (("primary", primary, primary_url), ("backup", backup, backup_url)):
            account = await gateway.add_account(
                name=name,
                provider="connectel",
                credentials={"token": fake.token},
                base_url=url,
                priority=1 if name == "primary" else 2,
            )
            fake.dlr_url = account["callback_urls"]["dlr"]
        try:
            yield gateway, primary, backup
        finally:
            await primary.drain()
            await backup.drain()


async def test_an_account_error_fails_over_to_the_next_account_by_priority(
    tmp_path: Path,
) -> None:
    async with two_connectel_accounts(tmp_path) as (gateway, primary, backup):
        primary.token = "revoked"
        [message] = await gateway.send(to="+46700000001", text="failover")
        assert message["account"] == "primary"

        async def delivered() -> dict[str, Any]:
            await backup.drain()
            detail = await gateway.message(message["id"])
            return detail if detail["status"] == "delivered" else {}

        detail = await eventually(delivered)
        assert detail["account"] == "backup" and len(backup.sent) == 1 and not primary.sent
        failover = next(e for e in detail["events"] if e["event"] == "message.failover")
        assert failover["previous_account"] == "primary" and failover["http_status"] == 401
        stats = (await gateway.stats())["accounts"]
        assert (
            stats["backup"]["delivered"] == 1 and stats.get("primary", {}).get("requests", 0) == 0
        )


async def test_a_message_that_named_its_account_never_fails_over(tmp_path: Path) -> None:
    async with two_connectel_accounts(tmp_path) as (gateway, primary, backup):
        primary.token = "revoked"
        [message] = await gateway.send(to="+46700000001", text="pinned", account="primary")
        statuses = await rigging.settle(gateway, primary, [message["id"]])
        assert statuses[message["id"]] == "failed" and not backup.sent


async def test_a_client_s_message_fails_over_only_among_the_client_s_accounts(
    tmp_path: Path,
) -> None:
    async with two_connectel_accounts(tmp_path) as (gateway, primary, backup):
        primary.token = "revoked"
        created = await gateway.api.post(
            "/v1/clients", json={"name": "pinned", "accounts": ["primary"]}
        )
        key = {"Authorization": f"Bearer {created.json()['key']}"}
        sent = await gateway.raw.post(
            "/v1/messages", json={"to": "+46700000001", "text": "mine"}, headers=key
        )
        [message] = sent.json()["messages"]
        assert message["account"] == "primary"
        statuses = await rigging.settle(gateway, primary, [message["id"]])
        assert statuses[message["id"]] == "failed" and not backup.sent


async def test_an_outage_fails_over_once_retries_are_exhausted(tmp_path: Path) -> None:
    async with two_connectel_accounts(tmp_path) as (gateway, primary, backup):
        primary.fail_next = [503] * 10
        [message] = await gateway.send(to="+46700000001", text="outage")

        async def delivered() -> dict[str, Any]:
            await backup.drain()
            detail = await gateway.message(message["id"])
            return detail if detail["status"] == "delivered" else {}

        detail = await eventually(delivered, within=20)
        events = [e["event"] for e in detail["events"]]
        assert events.count("message.retry") == gateway.settings.max_attempts - 1
        assert "message.failover" in events and detail["account"] == "backup"


async def test_real_traffic_never_fails_over_to_the_sandbox(tmp_path: Path) -> None:
    async with rigging.connectel_setup(tmp_path) as (gateway, fake):
        fake.token = "revoked"
        [message] = await gateway.send(to="+46700000001", text="no pretending")
        assert message["account"] == "conn"
        statuses = await rigging.settle(gateway, fake, [message["id"]])
        assert statuses[message["id"]] == "failed"
        assert (await gateway.message(message["id"]))["account"] == "conn"


async def test_test_mode_builds_the_request_but_sends_nothing(tmp_path: Path) -> None:
    async with rigging.connectel_setup(tmp_path, options={"test_mode": True}) as (gateway, fake):
        status, detail = await rigging.send_one(gateway, fake, "conn", "+46700000001", "dry")
        assert status == "failed" and detail["error"]["code"] == "test_mode"
        assert fake.requests_seen == 0 and detail["http_status"] is None


BRANDED = rigging.account_fields(
    "rm",
    "routemobile",
    {"username": "rm-user", "password": "rm-pass"},
    "BRAND",
    fallback_sender="SMSGW",
)
"""A Route Mobile account whose sender ID may be refused, with a fallback to retry with."""


async def test_a_refused_sender_id_is_retried_once_with_the_fallback_sender(
    tmp_path: Path,
) -> None:
    fake = FakeRouteMobile("rm-user", "rm-pass")
    fake.blocked_senders = {"BRAND"}
    async with rigging.provider_gateway(tmp_path, fake, BRANDED, callbacks=("dlr",)) as (
        gateway,
        _,
    ):
        [message] = await gateway.send(to="+919820000001", text="brand new", account="rm")

        async def delivered() -> dict[str, Any]:
            await fake.drain()
            detail = await gateway.message(message["id"])
            return detail if detail["status"] == "delivered" else {}

        detail = await eventually(delivered)
        assert detail["sender"] == "SMSGW"
        fallback = next(e for e in detail["events"] if e["event"] == "message.fallback_sender")
        assert (fallback["sender_id"], fallback["error_code"]) == ("SMSGW", "1707")
        assert [s["source"] for s in fake.sent] == ["SMSGW"]


async def test_a_refused_fallback_sender_fails_the_message(tmp_path: Path) -> None:
    fake = FakeRouteMobile("rm-user", "rm-pass")
    fake.blocked_senders = {"BRAND", "SMSGW"}
    async with rigging.provider_gateway(tmp_path, fake, BRANDED, callbacks=()) as (gateway, _):
        [message] = await gateway.send(to="+919820000001", text="brand new", account="rm")

        async def failed() -> dict[str, Any]:
            detail = await gateway.message(message["id"])
            return detail if detail["status"] == "failed" else {}

        detail = await eventually(failed)
        assert detail["error"]["code"] == "1707" and fake.requests_seen == 2


class WatchedConnectel(FakeConnectel):
    """A fake Connectel that looks, as each send request arrives, at what smsgw has
    committed for its message, and counts the requests it holds at once."""

    def __init__(self, token: str) -> None:
        super().__init__(token)
        self.settings: Settings | None = None
        self.ids: dict[str, str] = {}
        """Recipient digits -> message ID, filled in by the test once it has sent."""
        self.seen_unclaimed: list[str] = []
        self.in_flight = 0
        self.most_in_flight = 0

    async def _send(self, request: Request) -> JSONResponse:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            fields = await _read_fields(request)  # the body stays cached for the fake
            assert self.settings is not None
            message_id = await eventually(self._message_id(str(fields["recipient"])))
            # Read through a connection of its own: only what smsgw committed.
            [(status, claimed_until)] = await db_rows(
                self.settings,
                "SELECT m.status, o.claimed_until FROM messages m "
                "LEFT JOIN outbox o ON o.message_id = m.id WHERE m.id = ?",
                message_id,
            )
            if status != "sending" or claimed_until is None:
                self.seen_unclaimed.append(message_id)
            await asyncio.sleep(0.02)  # held a moment, so that others arrive meanwhile
            return await super()._send(request)
        finally:
            self.in_flight -= 1

    def _message_id(self, recipient: str) -> Any:
        async def known() -> str:
            return self.ids.get(recipient, "")

        return known


async def test_a_loop_account_claims_each_message_before_its_request_and_keeps_the_limit(
    tmp_path: Path,
) -> None:
    fake = WatchedConnectel(rigging.CONNECTEL_TOKEN)
    account = rigging.account_fields(
        "conn", "connectel", {"token": rigging.CONNECTEL_TOKEN}, "IKEA", pattern="loop"
    )
    async with rigging.provider_loop(tmp_path, fake, account, concurrency=4) as (gateway, _):
        fake.settings = gateway.settings
        numbers = [f"+467000{n:05d}" for n in range(40)]
        sent = await gateway.send(to=numbers, text="one by one", account="conn")
        fake.ids.update((m["to"].lstrip("+"), m["id"]) for m in sent)
        statuses = await rigging.settle(gateway, fake, [m["id"] for m in sent])
        assert set(statuses.values()) == {"delivered"}
        assert fake.requests_seen == 40 and not fake.seen_unclaimed
        assert 1 < fake.most_in_flight <= 4
        details = [await gateway.message(m["id"]) for m in sent]
        assert {d["attempts"] for d in details} == {1}
        assert await conn_counters(gateway) == rigging.tally(requests=40, accepted=40, delivered=40)


async def test_requests_waiting_for_a_slot_are_not_claimed_and_a_stop_leaves_them_due(
    tmp_path: Path,
) -> None:
    """While one request holds the only slot the others are not claimed (a crash would
    leave a claim to its lease and then to outcome_unknown, though nothing went out):
    a stop leaves them due, never sent and no attempt counted; the request in flight
    runs to its end."""
    fake = FakeConnectel(rigging.CONNECTEL_TOKEN)
    fake.hang_next, fake.hang_seconds = 1, 30.0
    async with serve(fake.app) as fake_url:
        settings = make_settings(tmp_path, concurrency=1)
        store = open_store(settings)
        await store.open()
        try:
            await store.create_account(rigging.loop_connectel(fake_url))
            ids = [f"m{n}" for n in range(5)]
            await store.enqueue(
                [
                    NewMessage(i, "conn", f"+4670000000{n}", "hi", "IKEA", "GSM-7", 1)
                    for n, i in enumerate(ids)
                ],
                {},
            )
            async with provider_client(settings) as client:
                dispatcher = Dispatcher(store, AccountDirectory(store), settings, client, Metrics())
                running = asyncio.create_task(dispatcher.run())

                async def claimed() -> int:
                    count = await db_count(
                        settings, "SELECT COUNT(*) FROM outbox WHERE claimed_until IS NOT NULL"
                    )
                    return count if len(fake.sent) == 1 else 0

                # The hung request is the only claim, now and a while later.
                assert await eventually(claimed) == 1
                await asyncio.sleep(0.3)
                assert await claimed() == 1
                running.cancel()
                await asyncio.sleep(0.1)
                fake.release_hung()
                with contextlib.suppress(asyncio.CancelledError):
                    await running
            messages = {m.to: m for i in ids if (m := await store.get_message(i))}
            first = messages.pop(f"+{fake.sent[0]['recipient']}")
            assert len(fake.sent) == fake.requests_seen == 1
            assert first.request_id and first.attempts == 1  # recorded, though stopped
            due = await store.due_messages(time.time(), 10)
            assert {m.id for m in due} == {m.id for m in messages.values()}
            assert {m.attempts for m in due} == {0}
        finally:
            await store.close()
