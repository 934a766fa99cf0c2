"""Scheduled sending, cancelling and validity (issue 19, slice 1), over real HTTP and
on both stores."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from service.accounts import AccountDirectory
from service.clock import iso_of
from service.dispatcher import Dispatcher
from service.metrics import Metrics
from service.model import NewMessage
from service.store import Store, open_store
from service.transport import provider_client
from tests import rig as rigging
from tests.conftest import Gateway, error_of, eventually, make_settings
from tests.fake_connectel import FakeConnectel
from tests.servers import serve


def in_zone(seconds: float, hours: int = 2) -> str:
    """A moment `seconds` from now, written with a UTC offset that is not UTC's."""
    moment = datetime.now(UTC) + timedelta(seconds=seconds)
    return moment.astimezone(timezone(timedelta(hours=hours))).isoformat(timespec="seconds")


async def table_counters(gateway: Gateway, account: str) -> dict[str, int]:
    """The counters the messages table implies, as the store derives them."""
    store = open_store(gateway.settings)
    await store.open()
    try:
        return (await store.derive_counters())[account].as_dict()
    finally:
        await store.close()


# -- what a send may ask for ------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"send_at": "2030-01-01T10:00:00"}, "send_at"),  # no offset: which 10:00?
        ({"send_at": "tomorrow"}, "send_at"),
        ({"send_at": 1893456000}, "send_at"),
        ({"send_at": "\uff12030-01-01T10:00:00Z"}, "send_at"),  # a full-width 2
        ({"send_at": "2030-02-30T10:00:00Z"}, "send_at"),
        ({"send_at": "past"}, "send_at"),
        ({"send_at": "far"}, "send_at"),
        ({"valid_for": 0}, "valid_for"),
        ({"valid_for": -5}, "valid_for"),
        ({"valid_for": 1.5}, "valid_for"),
        ({"valid_for": "60"}, "valid_for"),
        ({"valid_for": True}, "valid_for"),
        ({"valid_for": 10**12}, "valid_for"),
        ({"expires_at": "2030-01-01 10:00"}, "expires_at"),
        ({"expires_at": "past"}, "expires_at"),
        ({"valid_for": 60, "expires_at": "soon"}, "expires_at"),
        ({"send_at": "soon", "expires_at": "sooner"}, "expires_at"),
    ],
)
async def test_a_bad_schedule_or_validity_is_a_400_naming_its_field_and_stores_nothing(
    gateway: Gateway, fields: dict[str, object], field: str
) -> None:
    words = {
        "past": in_zone(-3600),
        "far": in_zone(36 * 86400),
        "soon": in_zone(600),
        "sooner": in_zone(300),
    }
    body = {k: words.get(v, v) if isinstance(v, str) else v for k, v in fields.items()}
    response = await gateway.api.post(
        "/v1/messages", json={"to": "+46700000001", "text": "hi", **body}
    )
    assert response.status_code == 400, response.text
    assert error_of(response)["field"] == field
    listed = await gateway.api.get("/v1/messages")
    assert listed.json()["messages"] == []


async def test_a_future_send_at_is_stored_scheduled_and_shown_with_its_validity(
    gateway: Gateway,
) -> None:
    send_at = in_zone(3600)
    [message] = await gateway.send(to="+46700000001", text="later", send_at=send_at, valid_for=600)
    due = datetime.fromisoformat(send_at)
    assert message["status"] == "scheduled"
    assert datetime.fromisoformat(message["send_at"]) == due
    assert datetime.fromisoformat(message["expires_at"]) == due + timedelta(seconds=600)
    shown = await gateway.message(message["id"])
    assert (shown["status"], shown["send_at"], shown["expires_at"]) == (
        "scheduled",
        message["send_at"],
        message["expires_at"],
    )
    assert [e["event"] for e in shown["events"]] == ["message.scheduled"]
    await asyncio.sleep(0.3)  # the dispatcher has had its chance: not due, not sent
    assert (await gateway.message(message["id"]))["status"] == "scheduled"


async def test_a_send_at_within_the_tolerance_is_sent_now(gateway: Gateway) -> None:
    [message] = await gateway.send(to="+46700000001", text="now", send_at=in_zone(-20))
    assert message["status"] == "queued" and message["send_at"] is None
    await eventually(lambda: _status_is(gateway, message["id"], "delivered"))


async def _status_is(gateway: Gateway, message_id: str, status: str) -> bool:
    return bool((await gateway.message(message_id))["status"] == status)


# -- cancelling -------------------------------------------------------------------------


async def test_a_scheduled_message_is_cancelled_never_sent_and_counted_as_cancelled(
    gateway: Gateway,
) -> None:
    [message] = await gateway.send(to="+46700000001", text="later", send_at=in_zone(2))
    response = await gateway.api.delete(f"/v1/messages/{message['id']}")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"
    assert [e["event"] for e in response.json()["events"]] == [
        "message.scheduled",
        "message.cancelled",
    ]
    await asyncio.sleep(2.5)  # past its send_at
    shown = await gateway.message(message["id"])
    assert shown["status"] == "cancelled" and shown["attempts"] == 0
    counters = (await gateway.stats())["accounts"]["sandbox"]
    assert counters == {**rigging.tally(cancelled=1), "unmatched": 0}
    assert await table_counters(gateway, "sandbox") == rigging.tally(cancelled=1)


async def test_cancelling_a_message_already_sent_is_a_409_and_changes_nothing(
    gateway: Gateway,
) -> None:
    [message] = await gateway.send(to="+46700000001", text="now")
    await eventually(lambda: _status_is(gateway, message["id"], "delivered"))
    before = await gateway.stats()
    response = await gateway.api.delete(f"/v1/messages/{message['id']}")
    assert response.status_code == 409
    assert error_of(response)["code"] == "not_cancellable"
    assert "delivered" in error_of(response)["message"]
    assert await gateway.stats() == before
    assert (await gateway.message(message["id"]))["status"] == "delivered"


async def test_cancelling_an_unknown_message_is_a_404(gateway: Gateway) -> None:
    response = await gateway.api.delete("/v1/messages/nope")
    assert response.status_code == 404
    assert error_of(response)["field"] == "id"


async def test_a_message_is_either_cancelled_or_submitted_never_both(tmp_path: Path) -> None:
    """Cancels race the dispatcher for the same messages: the account's rate lets a
    burst go at once and holds the rest, so some cancels come too late and most in
    time. Each message ends exactly one way, and the provider saw only the sent ones."""
    async with rigging.connectel_setup(
        tmp_path, pattern="loop", options={"rate_per_second": 10}
    ) as (gateway, fake):
        numbers = [f"+467000001{n:02d}" for n in range(30)]
        sent = await gateway.send(to=numbers, text="race", account="conn")

        async def under_way() -> bool:
            return fake.requests_seen > 0

        # Cancelled only once sending has begun: the burst goes, the rest wait for the
        # rate, so the cancels meet messages on both sides of the claim.
        await eventually(under_way)
        answers = await asyncio.gather(
            *(gateway.api.delete(f"/v1/messages/{m['id']}") for m in sent)
        )
        cancelled = {m["id"] for m, a in zip(sent, answers, strict=True) if a.status_code == 200}
        refused = {m["id"] for m, a in zip(sent, answers, strict=True) if a.status_code == 409}
        assert cancelled | refused == {m["id"] for m in sent}
        assert cancelled and refused, "the cancels did not race the dispatcher"
        final = await rigging.settle(gateway, fake, sorted(refused))
        assert set(final.values()) == {"delivered"}
        for message_id in cancelled:
            shown = await gateway.message(message_id)
            assert shown["status"] == "cancelled" and shown["request_id"] is None
            assert "message.sending" not in [e["event"] for e in shown["events"]]
        by_number = {m["id"]: m["to"].lstrip("+") for m in sent}
        assert sorted(s["recipient"] for s in fake.sent) == sorted(by_number[i] for i in refused)
        counters = await rigging.account_counters(gateway, "conn")
        expected = rigging.tally(
            requests=len(refused),
            accepted=len(refused),
            delivered=len(refused),
            cancelled=len(cancelled),
        )
        assert counters == expected == await table_counters(gateway, "conn")


# -- validity ---------------------------------------------------------------------------


async def test_a_message_waiting_past_its_validity_ends_expired_unsent_and_counted_failed(
    tmp_path: Path,
) -> None:
    """The provider asks for a retry later than the message is valid: the dispatcher's
    sweep ends it (`lease_seconds` 2 sweeps every half second) without a second send."""
    async with rigging.connectel_setup(
        tmp_path, pattern="loop", lease_seconds=2.0, retry_after_min=30.0
    ) as (gateway, fake):
        fake.fail_next, fake.retry_after = [429], "30"
        [message] = await gateway.send(to="+46700000001", text="stale", valid_for=1)
        await eventually(lambda: _status_is(gateway, message["id"], "expired"))
        shown = await gateway.message(message["id"])
        assert shown["error"]["code"] == "validity_expired"
        assert [e["event"] for e in shown["events"]][-1] == "message.expired"
        assert fake.requests_seen == 1 and fake.sent == []
        counters = await rigging.account_counters(gateway, "conn")
        assert counters == rigging.tally(requests=1, failed=1)
        assert counters == await table_counters(gateway, "conn")


async def test_validity_is_checked_when_a_message_is_claimed(tmp_path: Path) -> None:
    """Due again after a short retry but expired meanwhile: the claim ends it."""
    async with rigging.connectel_setup(tmp_path, pattern="loop", retry_after_min=1.5) as (
        gateway,
        fake,
    ):
        fake.fail_next, fake.retry_after = [429], "1"
        [message] = await gateway.send(to="+46700000001", text="stale", valid_for=1)
        await eventually(lambda: _status_is(gateway, message["id"], "expired"))
        assert fake.requests_seen == 1 and fake.sent == []


# -- across restarts and processes --------------------------------------------------------


@asynccontextmanager
async def dispatching(store: Store, settings_path: Path) -> AsyncIterator[None]:
    settings = make_settings(settings_path, poll_interval=0.05)
    async with provider_client(settings) as client:
        dispatcher = Dispatcher(store, AccountDirectory(store), settings, client, Metrics())
        running = asyncio.create_task(dispatcher.run())
        try:
            yield
        finally:
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running


async def test_a_scheduled_message_is_sent_once_at_its_time_after_a_restart_by_two_processes(
    tmp_path: Path,
) -> None:
    fake = FakeConnectel(rigging.CONNECTEL_TOKEN)
    async with serve(fake.app) as fake_url:
        settings = make_settings(tmp_path)
        first = open_store(settings)
        await first.open()
        await first.create_account(rigging.loop_connectel(fake_url))
        send_at = time.time() + 1.5
        await first.enqueue(
            [NewMessage("m1", "conn", "+46700000001", "hi", "IKEA", "GSM-7", 1, send_at=send_at)],
            {},
        )
        await first.close()  # the process that took it stops before it is due
        stores = [open_store(settings), open_store(settings)]
        for store in stores:
            await store.open()
        try:
            async with dispatching(stores[0], tmp_path), dispatching(stores[1], tmp_path):

                async def sent() -> bool:
                    message = await stores[0].get_message("m1")
                    return message is not None and message.request_id != ""

                await eventually(sent)
                await asyncio.sleep(0.5)  # both had their chance to send it again
            events = await stores[0].message_events("m1")
            sending = [e for e in events if e.event == "message.sending"]
            assert len(sending) == 1 and sending[0].ts >= iso_of(send_at)
            assert fake.requests_seen == 1
        finally:
            for store in stores:
                await store.close()
