"""Per-message status callbacks: what a client is told of its messages, signed, once per
status change, in order, durably.

smsgw runs on loopback and sends through the sandbox account, which posts real DLRs
back (numbers ending in 3 end undelivered, in 9 are refused); a receiver on loopback
records every callback and answers as planned. Signatures are checked with the
independent `standardwebhooks` package.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from service.delivery import new_secret
from tests.conftest import TOKEN, Gateway, error_of, eventually, running_gateway
from tests.receiver import QUICK, Call, Receiver

FINAL = ("delivered", "undelivered", "failed", "expired", "rejected", "cancelled")


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[Gateway]:
    async with running_gateway(tmp_path, **QUICK) as gateway:
        yield gateway


class Client:
    """A client of the gateway: its key, its webhook secret and an HTTP client."""

    def __init__(self, gateway: Gateway, created: dict[str, Any], http: httpx.AsyncClient):
        self.gateway = gateway
        self.name: str = created["name"]
        self.key: str = created["key"]
        self.secret: str = created["webhook_secret"]
        self.http = http

    async def send(self, **body: Any) -> dict[str, Any]:
        response = await self.http.post("/v1/messages", json=body)
        assert response.status_code == 202, response.text
        [message] = response.json()["messages"]
        assert isinstance(message, dict)
        return message

    async def message(self, message_id: str) -> dict[str, Any]:
        response = await self.http.get(f"/v1/messages/{message_id}")
        assert response.status_code == 200, response.text
        found: dict[str, Any] = response.json()
        return found


async def a_client(gateway: Gateway, name: str = "shop", **body: Any) -> AsyncIterator[Client]:
    response = await gateway.api.post("/v1/clients", json={"name": name, **body})
    assert response.status_code == 201, response.text
    created = response.json()
    async with httpx.AsyncClient(
        base_url=gateway.url, headers={"Authorization": f"Bearer {created['key']}"}, timeout=10
    ) as http:
        yield Client(gateway, created, http)


@pytest.fixture
async def shop(gw: Gateway) -> AsyncIterator[Client]:
    async for client in a_client(gw):
        yield client


async def until_final(client: Client, message_id: str) -> dict[str, Any]:
    async def final() -> dict[str, Any]:
        message = await client.message(message_id)
        return message if message["status"] in FINAL else {}

    return await eventually(final)


async def until_settled(client: Client, message_id: str, count: int) -> list[dict[str, Any]]:
    """The message's callbacks once `count` of them are no longer pending."""

    async def settled() -> list[dict[str, Any]]:
        callbacks: list[dict[str, Any]] = (await client.message(message_id))["callbacks"]
        done = [c for c in callbacks if c["state"] != "pending"]
        return callbacks if len(done) >= count else []

    return await eventually(settled)


def statuses(calls: list[Call]) -> list[str]:
    return [str(c.payload["status"]) for c in calls]


def status_events(message: dict[str, Any]) -> list[str]:
    """The statuses the message took, in order, from its event history."""
    return [e["status"] for e in message["events"] if e["event"] == f"message.{e.get('status')}"]


# -- what is sent ------------------------------------------------------------------


async def test_a_final_status_is_posted_once_signed_with_the_clients_secret(
    shop: Client, receiver: Receiver
) -> None:
    sent = await shop.send(
        to="+46700000001", text="hi", client_ref="order-17", callback_url=f"{receiver.url}/cb"
    )
    message = await until_final(shop, sent["id"])
    [call] = await receiver.received(1)

    verified = Webhook(shop.secret).verify(call.body, call.headers)
    assert verified == {
        "type": "message.status",
        "message_id": sent["id"],
        "client_ref": "order-17",
        "status": "delivered",
        "error": None,
        "segments": 1,
        "account": "sandbox",
        "timestamp": next(e for e in message["events"] if e["event"] == "message.delivered")["ts"],
    }
    assert call.headers["content-type"] == "application/json"
    assert call.headers["webhook-id"].startswith("msgst_")
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(call.body, call.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(shop.secret).verify(call.body.replace(b"delivered", b"cancelled"), call.headers)

    await asyncio.sleep(0.3)  # time for a duplicate or a non-final status to turn up
    assert len(receiver.calls) == 1
    [callback] = (await shop.message(sent["id"]))["callbacks"]
    assert callback["webhook_id"] == call.headers["webhook-id"]
    assert (callback["status"], callback["state"], callback["next_attempt_at"]) == (
        "delivered",
        "delivered",
        None,
    )
    [attempt] = callback["attempts"]
    assert (attempt["http_status"], attempt["error"], attempt["outcome"]) == (
        200,
        None,
        "delivered",
    )
    assert attempt["at"]

    page = await console_page(shop.gateway, sent["id"])
    assert callback["webhook_id"] in page and "Status callbacks" in page
    assert f"{receiver.url}/cb" in page


async def console_page(gateway: Gateway, message_id: str) -> str:
    """The console's page of the message, signed in with the admin token."""
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as http:
        signed_in = await http.post("/console/login", data={"token": TOKEN, "next": "/console/"})
        assert signed_in.status_code == 303
        page = await http.get(f"/console/messages/{message_id}")
        assert page.status_code == 200
        return page.text


async def test_with_all_every_status_is_posted_in_the_order_the_message_took_them(
    shop: Client, receiver: Receiver
) -> None:
    sent = await shop.send(
        to="+46700000003", text="hi", callback_url=f"{receiver.url}/all", callback_events="all"
    )
    message = await until_final(shop, sent["id"])
    taken = status_events(message)
    assert taken[0] == "queued" and taken[-1] == "undelivered" and "enroute" in taken
    calls = await receiver.received(len(taken))
    await asyncio.sleep(0.3)
    assert statuses(receiver.calls) == taken
    assert len({c.headers["webhook-id"] for c in calls}) == len(taken)
    for call in calls:
        Webhook(shop.secret).verify(call.body, call.headers)
    last = calls[-1].payload
    assert last["error"] == {"code": "undelivered", "message": last["error"]["message"]}
    assert all(c.payload["error"] is None for c in calls[:-1])


async def test_a_refused_message_names_the_providers_error(
    shop: Client, receiver: Receiver
) -> None:
    sent = await shop.send(to="+46700000009", text="hi", callback_url=f"{receiver.url}/no")
    message = await until_final(shop, sent["id"])
    [call] = await receiver.received(1)
    assert call.payload["status"] == "failed"
    assert call.payload["error"] == {
        "code": message["error"]["code"],
        "message": message["error"]["message"],
    }
    assert call.payload["error"]["code"] == "invalid_number"


async def test_the_clients_callback_url_is_the_default_and_a_message_may_name_its_own(
    gw: Gateway, receiver: Receiver
) -> None:
    async for client in a_client(gw, "app", callback_url=f"{receiver.url}/default"):
        by_default = await client.send(to="+46700000001", text="a")
        own = await client.send(to="+46700000001", text="b", callback_url=f"{receiver.url}/own")
        for sent in (by_default, own):
            await until_final(client, sent["id"])
        await receiver.received(2)
        assert [c.payload["message_id"] for c in receiver.at("/default")] == [by_default["id"]]
        assert [c.payload["message_id"] for c in receiver.at("/own")] == [own["id"]]
        shown = await client.message(own["id"])
        assert (shown["callback_url"], shown["callback_events"]) == (f"{receiver.url}/own", "final")


async def test_a_message_without_a_callback_url_posts_nothing(
    shop: Client, receiver: Receiver
) -> None:
    sent = await shop.send(to="+46700000001", text="quiet", callback_events="all")
    message = await until_final(shop, sent["id"])
    await asyncio.sleep(0.3)
    assert receiver.calls == []
    assert (message["callback_url"], message["callbacks"]) == (None, [])


# -- retries, order, 410 -------------------------------------------------------------


async def test_a_failed_callback_is_retried_under_the_same_webhook_id_and_shown(
    shop: Client, receiver: Receiver
) -> None:
    receiver.plan = [(500, {}), (503, {})]
    sent = await shop.send(to="+46700000001", text="retry", callback_url=f"{receiver.url}/r")
    calls = await receiver.received(3)
    assert [c.status for c in calls] == [500, 503, 200]
    assert len({c.headers["webhook-id"] for c in calls}) == 1
    assert len({c.body for c in calls}) == 1
    [callback] = await until_settled(shop, sent["id"], 1)
    assert callback["state"] == "delivered"
    assert [(a["http_status"], a["outcome"]) for a in callback["attempts"]] == [
        (500, "retry"),
        (503, "retry"),
        (200, "delivered"),
    ]
    assert callback["attempts"][0]["error"] == "HTTP 500: planned failure"


async def test_a_later_status_waits_until_the_earlier_one_is_delivered(
    shop: Client, receiver: Receiver
) -> None:
    # The first callback (queued) fails twice; everything after it must wait.
    receiver.plan = [(500, {}), (500, {})]
    sent = await shop.send(
        to="+46700000001", text="order", callback_url=f"{receiver.url}/o", callback_events="all"
    )
    message = await until_final(shop, sent["id"])
    taken = status_events(message)
    await receiver.received(len(taken) + 2)
    await asyncio.sleep(0.3)
    assert statuses(receiver.calls) == ["queued", "queued", *taken]
    assert [c.status for c in receiver.calls[:3]] == [500, 500, 200]


async def test_410_stops_the_messages_callbacks_for_good(shop: Client, receiver: Receiver) -> None:
    receiver.then = 410
    sent = await shop.send(
        to="+46700000001", text="gone", callback_url=f"{receiver.url}/g", callback_events="all"
    )
    message = await until_final(shop, sent["id"])
    await receiver.received(1)
    await asyncio.sleep(0.3)
    assert statuses(receiver.calls) == ["queued"]

    async def stopped() -> dict[str, Any]:
        shown = await shop.message(sent["id"])
        return shown if shown["callbacks_stopped_at"] else {}

    shown = await eventually(stopped)
    first, *rest = shown["callbacks"]
    assert first["state"] == "stopped"
    assert [a["http_status"] for a in first["attempts"]] == [410]
    # Changes made before the 410 was recorded are dropped; none is queued after it.
    assert all(c["state"] == "stopped" and c["attempts"] == [] for c in rest)
    assert len(shown["callbacks"]) <= len(status_events(message))

    another = await shop.send(to="+46700000001", text="new", callback_url=f"{receiver.url}/g")
    receiver.then = 200
    await until_final(shop, another["id"])
    await receiver.received(2)  # another message's callbacks are its own


async def test_pending_callbacks_survive_a_restart_and_arrive_once(
    tmp_path: Path, receiver: Receiver
) -> None:
    receiver.then = 500
    async with running_gateway(tmp_path, **QUICK) as gw:
        async for shop in a_client(gw):
            sent = await shop.send(
                to="+46700000001", text="outlive", callback_url=receiver.url + "/d"
            )
            await until_final(shop, sent["id"])
            await receiver.received(2)
            secret = shop.secret
    receiver.then = 200
    async with running_gateway(tmp_path, **QUICK) as gw:

        async def answered() -> list[Call]:
            return [c for c in receiver.calls if c.status == 200]

        [ok] = await eventually(answered)
        await asyncio.sleep(0.3)
        assert len([c for c in receiver.calls if c.status == 200]) == 1
        assert {c.headers["webhook-id"] for c in receiver.calls} == {ok.headers["webhook-id"]}
        assert Webhook(secret).verify(ok.body, ok.headers)["status"] == "delivered"
        shown = (await gw.api.get(f"/v1/messages/{sent['id']}")).json()
        [callback] = shown["callbacks"]
        assert callback["state"] == "delivered" and len(callback["attempts"]) >= 3


# -- admin sends, input, secrets -----------------------------------------------------


async def test_an_admin_send_is_signed_with_the_gateways_secret_when_one_is_set(
    tmp_path: Path, receiver: Receiver
) -> None:
    secret = new_secret()
    async with running_gateway(tmp_path, **QUICK, status_callback_secret=secret) as gw:
        [sent] = await gw.send(to="+46700000001", text="admin", callback_url=receiver.url + "/a")
        [call] = await receiver.received(1)
        verified = Webhook(secret).verify(call.body, call.headers)
        assert (verified["message_id"], verified["status"]) == (sent["id"], "delivered")


async def test_an_admin_send_asking_for_callbacks_with_no_gateway_secret_is_refused(
    gw: Gateway, receiver: Receiver
) -> None:
    response = await gw.api.post(
        "/v1/messages", json={"to": "+46700000001", "text": "x", "callback_url": receiver.url}
    )
    assert response.status_code == 422
    assert error_of(response)["field"] == "callback_url"
    assert "SMSGW_CALLBACK_SECRET" in error_of(response)["message"]
    assert (await gw.api.get("/v1/messages")).json()["messages"] == []


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"callback_url": "ftp://example.org/cb"}, "callback_url"),
        ({"callback_url": 5}, "callback_url"),
        ({"callback_url": ""}, "callback_url"),
        ({"callback_url": "example.org/cb"}, "callback_url"),
        ({"callback_url": "https://"}, "callback_url"),
        ({"callback_url": "https://example.org/" + "a" * 3000}, "callback_url"),
        ({"callback_events": "some"}, "callback_events"),
        ({"callback_events": ["all"]}, "callback_events"),
        ({"callback_events": None}, "callback_events"),
    ],
)
async def test_a_bad_callback_field_is_422_naming_it_and_queues_nothing(
    shop: Client, fields: dict[str, Any], field: str
) -> None:
    response = await shop.http.post(
        "/v1/messages", json={"to": "+46700000001", "text": "x", **fields}
    )
    assert response.status_code == 422, response.text
    assert error_of(response)["field"] == field
    assert (await shop.http.get("/v1/messages")).json()["messages"] == []


async def test_the_webhook_secret_is_never_shown_logged_or_sent(
    shop: Client, receiver: Receiver, capfd: pytest.CaptureFixture[str]
) -> None:
    receiver.plan = [(500, {})]
    sent = await shop.send(
        to="+46700000001", text="s", callback_url=f"{receiver.url}/s", callback_events="all"
    )
    message = await until_final(shop, sent["id"])
    calls = await receiver.received(len(status_events(message)) + 1)
    gw = shop.gateway
    shown = [
        (await shop.http.get(f"/v1/messages/{sent['id']}")).text,
        (await gw.api.get(f"/v1/messages/{sent['id']}")).text,
        (await gw.api.get("/v1/messages")).text,
        (await gw.api.get("/v1/events", params={"limit": 1000})).text,
        (await gw.api.get("/v1/clients/shop")).text,
        (await gw.api.get("/metrics")).text,
        await console_page(gw, sent["id"]),
    ]
    shown += [json.dumps(dict(c.headers)) + c.body.decode() for c in calls]
    output = capfd.readouterr()
    key = shop.secret.removeprefix("whsec_")
    for text in (*shown, output.out + output.err):
        assert key not in text
    assert "status_callback.retry" in output.out + output.err
