"""The per-account circuit breaker: an outage costs the provider no traffic."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from service.breaker import CircuitBreaker
from tests.conftest import Gateway, eventually
from tests.fake_connectel import FakeConnectel
from tests.rig import CONNECTEL_TOKEN, connectel_setup, settle
from tests.servers import serve


async def events_of(gateway: Gateway, ids: list[str]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for message_id in ids:
        found.extend((await gateway.message(message_id))["events"])
    return found


def test_the_circuit_opens_after_the_threshold_and_lets_one_probe_through() -> None:
    breaker = CircuitBreaker(threshold=3, cooldown=10)
    for _ in range(2):
        breaker.failed("a", now=100)
    assert breaker.open_until("a", now=100) is None
    breaker.failed("a", now=101)
    assert breaker.open_until("a", now=105) == 111
    assert not breaker.half_open("a", now=105)
    assert breaker.open_until("b", now=105) is None and not breaker.half_open("b", now=105)
    # After the cooldown the next request is the probe; failing, it reopens the circuit.
    assert breaker.open_until("a", now=111) is None and breaker.half_open("a", now=111)
    breaker.failed("a", now=112)
    assert breaker.open_until("a", now=113) == 122


def test_an_answer_closes_the_circuit() -> None:
    breaker = CircuitBreaker(threshold=2, cooldown=10)
    breaker.failed("a", now=0)
    breaker.failed("a", now=0)
    breaker.answered("a")
    assert breaker.open_until("a", now=1) is None
    breaker.failed("a", now=2)
    assert breaker.open_until("a", now=3) is None


async def test_an_outage_opens_the_circuit_and_routed_messages_fail_over(tmp_path: Path) -> None:
    backup = FakeConnectel(CONNECTEL_TOKEN)
    async with (
        connectel_setup(
            tmp_path,
            pattern="loop",
            breaker_threshold=2,
            breaker_cooldown=60,
            max_attempts=20,
            concurrency=2,
        ) as (gateway, fake),
        serve(backup.app) as backup_url,
    ):
        await gateway.add_account(
            name="backup",
            provider="connectel",
            credentials={"token": CONNECTEL_TOKEN},
            sender="IKEA",
            base_url=backup_url,
            pattern="loop",
            priority=50,
        )
        fake.fail_next = [503] * 50
        sent = await gateway.send(to=[f"+4670000000{n}" for n in range(1, 9)], text="outage")
        ids = [m["id"] for m in sent]

        async def moved() -> bool:
            """All moved to the backup, and sent there (a move is recorded before its
            request goes out)."""
            accounts = [(await gateway.message(i))["account"] for i in ids]
            return set(accounts) == {"backup"} and len(backup.sent) >= len(ids)

        await eventually(moved)
        # Two failures in a row opened the circuit. Two requests run at once, so one more
        # may have been in flight then; no request started after it.
        assert 2 <= fake.requests_seen <= 3
        assert len(backup.sent) == 8
        failovers = [e for e in await events_of(gateway, ids) if e["event"] == "message.failover"]
        assert {e["error_code"] for e in failovers} == {"circuit_open"}


async def test_after_the_cooldown_a_probe_that_succeeds_closes_the_circuit(
    tmp_path: Path,
) -> None:
    async with connectel_setup(
        tmp_path, pattern="loop", breaker_threshold=2, breaker_cooldown=0.5, max_attempts=20,
        backoff_base=0.01,
    ) as (gateway, fake):  # fmt: skip
        fake.fail_next = [503, 503]
        sent = await gateway.send(
            to=["+46700000001", "+46700000002"], text="recovers", account="conn"
        )
        statuses = await settle(gateway, fake, [m["id"] for m in sent])
        assert set(statuses.values()) == {"delivered"}
        ids = [m["id"] for m in sent]
        events = [e for e in await events_of(gateway, ids) if e["event"] == "message.retry"]
        assert {e["error_code"] for e in events} >= {"circuit_open"}


async def test_a_deferral_by_an_open_circuit_is_not_an_attempt(tmp_path: Path) -> None:
    """Attempts count requests that went out: the message gives up after exactly
    `max_attempts` requests however often the open circuit held it back."""
    async with connectel_setup(
        tmp_path, pattern="loop", breaker_threshold=2, breaker_cooldown=0.3, max_attempts=4,
        backoff_base=0.01, backoff_cap=0.02,
    ) as (gateway, fake):  # fmt: skip
        fake.fail_next = [503] * 50
        [sent] = await gateway.send(to="+46700000001", text="outage", account="conn")

        async def failed() -> dict[str, Any]:
            detail = await gateway.message(sent["id"])
            return detail if detail["status"] == "failed" else {}

        detail = await eventually(failed)
        assert fake.requests_seen == gateway.settings.max_attempts == detail["attempts"]
        assert detail["error"]["message"].startswith(f"gave up after {fake.requests_seen} ")
        deferred = [e for e in detail["events"] if e.get("error_code") == "circuit_open"]
        assert deferred, "the circuit never held the message back"
