"""Provider credentials never show: not in logs, API answers, events (the log, /v1/events,
the SSE stream, webhooks), metrics, console pages, stored provider responses, nor
either store's data.

Every provider runs against its fake with the credentials its tests use, sends and
reads its balance; then its secret is changed to a wrong one full of characters that
change when encoded, and the fake echoes the account's credentials in every answer
(headers, error texts, bodies; plain, JSON-escaped, URL-encoded, base64 and as HTTP
Basic `user:password`) while the next send fails. Everything smsgw said or stored is
then searched for every encoded form of both secrets.
"""

from __future__ import annotations

import html
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.redact import REDACTED
from tests import (
    rig,
    test_clickatell,
    test_infobip,
    test_intellisoftware,
    test_routemobile,
    test_sms1609,
    test_twilio,
)
from tests.conftest import TOKEN, Gateway, eventually
from tests.databases import db_dump
from tests.fake_server import FakeServer, echo_forms
from tests.servers import serve

FINAL = {"delivered", "undelivered", "expired", "rejected", "failed"}
WRONG = 'W/r"o\\ng +&%='
"""Prefix of the wrong secret: each of these characters is written differently in
JSON, in a URL, in a form and in HTML."""


@dataclass(frozen=True)
class Provider:
    setup: Callable[[Path], AbstractAsyncContextManager[tuple[Gateway, FakeServer]]]
    account: str
    secret_field: str
    secret: str


def gateway_of(setup: Callable[..., AbstractAsyncContextManager[Any]]) -> Any:
    """A provider test's setup, which yields its gateway first and its fake second."""

    @asynccontextmanager
    async def gateway_and_fake(tmp_path: Path) -> AsyncIterator[tuple[Gateway, FakeServer]]:
        async with setup(tmp_path) as given:
            yield given[0], given[1]

    return gateway_and_fake


PROVIDERS = {
    "connectel": Provider(
        gateway_of(rig.connectel_setup),
        "conn",
        "token",
        rig.CONNECTEL_TOKEN,
    ),
    "routemobile": Provider(
        gateway_of(test_routemobile.routemobile_setup),
        "rm",
        "password",
        test_routemobile.PASSWORD,
    ),
    "intellisoftware": Provider(
        gateway_of(test_intellisoftware.intelli_setup),
        "intelli",
        "password",
        test_intellisoftware.PASSWORD,
    ),
    "sms1609": Provider(
        gateway_of(test_sms1609.sms1609_setup),
        "s1609",
        "password",
        test_sms1609.PASSWORD,
    ),
    "infobip": Provider(
        gateway_of(test_infobip.infobip_setup),
        "ib",
        "api_key",
        test_infobip.API_KEY,
    ),
    "clickatell": Provider(
        gateway_of(test_clickatell.clickatell_setup),
        "click",
        "api_key",
        test_clickatell.API_KEY,
    ),
    "twilio": Provider(
        gateway_of(test_twilio.twilio_setup),
        "tw",
        "auth_token",
        test_twilio.TOKEN,
    ),
}


def forbidden(secret: str, companions: list[str]) -> set[str]:
    """Every form of `secret` that must not show: those a fake echoes, HTML-escaped for
    pages, and HTTP Basic with each other credential."""
    forms = set(echo_forms([secret]))
    forms |= set(echo_forms([*companions, secret])) - set(echo_forms(companions))
    forms |= {html.escape(form) for form in forms}
    return forms


class Hooks:
    """A webhook endpoint that keeps every delivery's body."""

    def __init__(self) -> None:
        self.bodies: list[str] = []

    async def endpoint(self, request: Request) -> Response:
        self.bodies.append((await request.body()).decode())
        return Response("ok")

    @property
    def app(self) -> Starlette:
        return Starlette(routes=[Route("/hook", self.endpoint, methods=["POST"])])


async def final_status(gateway: Gateway, message_id: str) -> str:
    async def final() -> str:
        status: str = (await gateway.message(message_id))["status"]
        return status if status in FINAL else ""

    return await eventually(final)


async def everything_shown(gateway: Gateway, account: str) -> str:
    """Every answer the API gives about what happened, as one text."""
    texts = []
    for path in ("/v1/accounts", f"/v1/accounts/{account}", "/v1/stats", "/v1/inbound"):
        texts.append((await gateway.api.get(path)).text)
    texts.append((await gateway.api.get("/v1/events", params={"limit": 1000})).text)
    texts.append((await gateway.api.get("/metrics")).text)
    listed = (await gateway.api.get("/v1/messages", params={"limit": 1000})).json()
    texts += [(await gateway.api.get(f"/v1/messages/{m['id']}")).text for m in listed["messages"]]
    texts.append((await gateway.api.get(f"/v1/balance/{account}")).text)
    return "\n".join(texts)


async def console_pages(gateway: Gateway, account: str, message_ids: list[str]) -> str:
    """The console's General, History, message, Gateways and balance pages, signed in."""
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as http:
        signed_in = await http.post("/console/login", data={"token": TOKEN, "next": "/console/"})
        assert signed_in.status_code == 303
        paths = ["/console/", "/console/history", "/console/gateways"]
        paths += [f"/console/gateways/{account}", f"/console/gateways/{account}/balance"]
        paths += [f"/console/messages/{i}" for i in message_ids]
        pages = [await http.get(path) for path in paths]
    assert all(page.status_code == 200 for page in pages[:3])
    return "\n".join(page.text for page in pages)


async def event_stream(gateway: Gateway, last_message: str) -> str:
    """The SSE stream from the first event until `last_message` failed, as sent."""
    seen: list[str] = []
    async with gateway.api.stream("GET", "/v1/events/stream") as answer:
        async for line in answer.aiter_lines():
            seen.append(line)
            if line.startswith("data:") and "message.failed" in line and last_message in line:
                break
    return "\n".join(seen)


@pytest.mark.parametrize("name", sorted(PROVIDERS))
async def test_no_secret_shows_anywhere(
    name: str, tmp_path: Path, store_kind: str, capfd: pytest.CaptureFixture[str]
) -> None:
    provider = PROVIDERS[name]
    wrong = WRONG + provider.secret[::-1]
    hooks = Hooks()
    async with provider.setup(tmp_path) as (gateway, fake), serve(hooks.app) as hooks_url:
        hooked = await gateway.api.post("/v1/webhooks", json={"url": f"{hooks_url}/hook"})
        assert hooked.status_code == 201, hooked.text
        [good] = await gateway.send(to="+46700000001", text="hello", account=provider.account)
        assert await final_status(gateway, good["id"]) == "delivered"
        shown = await everything_shown(gateway, provider.account)
        patched = await gateway.api.patch(
            f"/v1/accounts/{provider.account}",
            json={"credentials": {provider.secret_field: wrong}},
        )
        assert patched.status_code == 200, patched.text
        companions = [
            value
            for field, value in patched.json()["credentials"].items()
            if field != provider.secret_field
        ]
        fake.echo = [*companions, wrong]
        [bad] = await gateway.send(to="+46700000002", text="hello", account=provider.account)
        assert await final_status(gateway, bad["id"]) == "failed"
        shown += await everything_shown(gateway, provider.account)
        shown += await console_pages(gateway, provider.account, [good["id"], bad["id"]])
        shown += await event_stream(gateway, bad["id"])

        async def failure_delivered() -> bool:
            return any("message.failed" in body for body in hooks.bodies)

        await eventually(failure_delivered)
        shown += "\n".join(hooks.bodies)
        dump = await db_dump(gateway.settings)
        files = b"".join(
            path.read_bytes() for path in gateway.settings.data_dir.glob("*.db*") if path.is_file()
        )
    output = capfd.readouterr()
    printed = output.out + output.err
    for secret in (provider.secret, wrong):
        for form in forbidden(secret, companions):
            assert form not in shown, f"{name}: shown: {form!r}"
            assert form not in printed, f"{name}: printed: {form!r}"
            assert form not in dump, f"{name}: stored: {form!r}"
            assert form.encode() not in files, f"{name}: in the database file: {form!r}"
    assert REDACTED in shown, f"{name}: the fake's echo never reached smsgw"
