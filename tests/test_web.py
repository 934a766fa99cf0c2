"""The web console over real HTTP: sign-in, sessions, CSRF, and every page with data."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.routing import Mount, Route

from handlers import HANDLERS
from service.app import create_app
from service.model import Status
from service.reconcile import is_final
from service.segments import segment
from service.store import open_store
from service.web.gateways import COLUMNS
from service.web.pages import delivery_rate, hourly_chart
from service.web.session import COOKIE, PREFIX, SessionSigner
from tests.conftest import TOKEN, Gateway, eventually, make_settings, running_gateway

PAGES = ("/console/", "/console/history", "/console/send", "/console/inbound", "/console/gateways")
# One account per provider, each secret unique so that a leak names its source. The
# base URL is a closed port: balance calls fail at once, and their errors are shown.
SECRETS = {
    "connectel": {"token": "SECRET-connectel-token-5c1d"},
    "routemobile": {"username": "rm-user", "password": "SECRET-routemobile-pw-9a7e"},
    "intellisoftware": {"username": "is-user", "password": "SECRET-intelli-pw-3f2b"},
    "sms1609": {"username": "s-user", "password": "SECRET-sms1609-pw-77aa"},
    "infobip": {"api_key": "SECRET-infobip-key-1e0f"},
    "clickatell": {"api_key": "SECRET-clickatell-key-8b8b"},
    "twilio": {"account_sid": "AC0123456789", "auth_token": "SECRET-twilio-token-4d4d"},
}


@dataclass
class Console:
    gw: Gateway
    http: httpx.AsyncClient

    async def page(self, path: str, expect: int = 200, **params: Any) -> str:
        response = await self.http.get(path, params=params)
        assert response.status_code == expect, (path, response.status_code, response.text)
        return response.text

    async def csrf(self, path: str = "/console/send") -> str:
        return field_value(await self.page(path), "csrf")

    async def post(self, path: str, form: dict[str, str], csrf: bool = True) -> httpx.Response:
        data = {"csrf": await self.csrf(), **form} if csrf else form
        return await self.http.post(path, data=data)


def field_value(html: str, name: str) -> str:
    found = re.search(rf'name="{re.escape(name)}"[^>]*value="([^"]*)"', html)
    assert found, f"no {name} field"
    return found[1]


def alert(html: str) -> str:
    found = re.search(r'role="alert"[^>]*>([^<]*)<', html)
    return found[1] if found else ""


async def sign_in(gw: Gateway, http: httpx.AsyncClient) -> httpx.Response:
    return await http.post("/console/login", data={"token": TOKEN, "next": "/console/"})


@pytest.fixture
async def console(gateway: Gateway) -> AsyncIterator[Console]:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as http:
        assert (await sign_in(gateway, http)).status_code == 303
        yield Console(gateway, http)


async def statuses(gw: Gateway) -> list[str]:
    body = (await gw.api.get("/v1/messages")).json()
    return [m["status"] for m in body["messages"]]


# -- sign-in and sessions -----------------------------------------------------------


async def test_every_page_redirects_to_sign_in_without_a_session(gateway: Gateway) -> None:
    for path in (*PAGES, "/console/messages/x", "/console/gateways/sandbox"):
        response = await gateway.raw.get(path, params={"a": "1"})
        assert response.status_code == 303
        assert response.headers["location"].startswith("/console/login?next=")
    login = await gateway.raw.get("/console/login")
    assert login.status_code == 200 and 'type="password"' in login.text


async def test_a_wrong_token_is_refused_without_a_cookie_or_an_echo(gateway: Gateway) -> None:
    guess = "not-the-token-6b1f"
    response = await gateway.raw.post("/console/login", data={"token": guess})
    assert response.status_code == 401
    assert "set-cookie" not in response.headers
    assert guess not in response.text and alert(response.text)


async def test_signing_in_sets_a_strict_httponly_signed_cookie_and_goes_next(
    gateway: Gateway,
) -> None:
    response = await gateway.raw.post(
        "/console/login", data={"token": TOKEN, "next": "/console/history?status=failed"}
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/console/history?status=failed"
    cookie = response.headers["set-cookie"]
    flags = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "samesite", "path", "max-age"} <= flags and "secure" not in flags
    assert "samesite=strict" in cookie.lower() and "path=/console" in cookie.lower()
    assert TOKEN not in cookie


async def test_sign_in_never_redirects_off_the_console(gateway: Gateway) -> None:
    for target in ("https://evil.example/", "//evil.example/", "/v1/stats"):
        response = await gateway.raw.post("/console/login", data={"token": TOKEN, "next": target})
        assert response.headers["location"] == "/console/"


async def test_the_cookie_is_secure_when_the_public_url_is_https(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path, "https://sms.example"))
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="https://sms.example") as http,
    ):
        response = await http.post("/console/login", data={"token": TOKEN})
    assert response.status_code == 303 and "secure" in response.headers["set-cookie"].lower()


def test_a_session_is_signed_bound_to_its_token_and_expires() -> None:
    now = [1_000_000.0]
    signer = SessionSigner(("a", "b"), ttl=60, clock=lambda: now[0])
    of_a, of_b = signer.token_id("a"), signer.token_id("b")
    assert of_a and of_b and of_a != of_b and signer.token_id("c") is None
    cookie, session = signer.issue(of_a)
    assert signer.read(cookie) == session and "a" not in cookie.split(".")
    # Other tokens may come and go; without its own token a session is over.
    assert SessionSigner(("b", "a"), ttl=60, clock=lambda: now[0]).read(cookie) == session
    assert SessionSigner(("a", "c"), ttl=60, clock=lambda: now[0]).read(cookie) == session
    assert SessionSigner(("b", "c"), ttl=60, clock=lambda: now[0]).read(cookie) is None
    expires, token_id, nonce, signature = cookie.split(".")
    assert signer.read(f"{int(expires) + 999}.{token_id}.{nonce}.{signature}") is None
    assert signer.read(f"{expires}.{token_id}.{nonce}x.{signature}") is None
    assert signer.read(f"{expires}.{of_b}.{nonce}.{signature}") is None
    assert signer.read("") is None and signer.read("junk") is None
    now[0] += 61
    assert signer.read(cookie) is None
    assert SessionSigner((), ttl=60).read(cookie) is None


async def test_a_forged_cookie_is_no_session(gateway: Gateway) -> None:
    gateway.raw.cookies.set(COOKIE, "9999999999.nonce.forged", path="/console")
    response = await gateway.raw.get("/console/")
    assert response.status_code == 303


async def test_signing_out_clears_the_cookie(console: Console) -> None:
    response = await console.post("/console/logout", {})
    assert response.status_code == 303 and response.headers["location"] == "/console/login"
    assert f'{COOKIE}=""' in response.headers["set-cookie"] or "max-age=0" in (
        response.headers["set-cookie"].lower()
    )
    assert (await console.http.get("/console/")).status_code == 303


def console_routes(gw: Gateway) -> list[tuple[str, str]]:
    """(method, path) of every console page behind sign-in, parameters filled in."""
    [mount] = [
        r for r in create_app(gw.settings).routes if isinstance(r, Mount) and r.path == PREFIX
    ]
    found = []
    for route in mount.routes:
        if isinstance(route, Route) and route.path != "/login":
            path = PREFIX + re.sub(r"\{[^}]+\}", "sandbox", route.path)
            found += [(m, path) for m in sorted(route.methods or ()) if m != "HEAD"]
    return found


async def refused_everywhere(gw: Gateway, cookie: str, csrf: str) -> None:
    """The cookie opens no console page, reading or writing, and changes nothing."""
    routes = console_routes(gw)
    assert len(routes) >= 15 and ("POST", "/console/send") in routes
    headers = {"Cookie": f"{COOKIE}={cookie}"}
    for method, path in routes:
        form = {"csrf": csrf, "to": "+46700000001", "text": "x", "active": "0"}
        answer = await gw.raw.request(
            method, path, headers=headers, data=form if method == "POST" else None
        )
        assert answer.status_code == 303, (method, path, answer.status_code)
        assert answer.headers["location"].startswith("/console/login")
    assert await statuses(gw) == []
    [sandbox] = (await gw.api.get("/v1/accounts")).json()["accounts"]
    assert sandbox["active"] is True


async def test_a_signed_out_session_is_refused_by_every_process(tmp_path: Path) -> None:
    async with (
        running_gateway(tmp_path) as first,
        running_gateway(tmp_path) as second,
        httpx.AsyncClient(base_url=first.url) as browser,
    ):
        signed_in = await sign_in(first, browser)
        cookie = signed_in.cookies[COOKIE]
        csrf = field_value((await browser.get("/console/send")).text, "csrf")
        # One session, seen by both processes through the store.
        headers = {"Cookie": f"{COOKIE}={cookie}"}
        assert (await second.raw.get("/console/", headers=headers)).status_code == 200
        signed_out = await browser.post("/console/logout", data={"csrf": csrf})
        assert signed_out.status_code == 303
        # A copy of the cookie kept from before is worth nothing, here or there.
        await refused_everywhere(first, cookie, csrf)
        await refused_everywhere(second, cookie, csrf)
        login = await second.raw.get("/console/login", headers=headers)
        assert login.status_code == 200 and 'type="password"' in login.text


async def test_removing_a_token_ends_the_sessions_it_opened(tmp_path: Path) -> None:
    spare = "spare-token-0b7d"
    async with running_gateway(tmp_path, api_tokens=(TOKEN, spare)) as before:
        cookies = {}
        for token in (TOKEN, spare):
            answer = await before.raw.post("/console/login", data={"token": token})
            cookies[token] = answer.cookies[COOKIE]
            before.raw.cookies.clear()
        csrf = field_value(
            (
                await before.raw.get(
                    "/console/send", headers={"Cookie": f"{COOKIE}={cookies[spare]}"}
                )
            ).text,
            "csrf",
        )
    # Started again without the spare token, on the same store.
    async with running_gateway(tmp_path, api_tokens=(TOKEN,)) as after:
        await refused_everywhere(after, cookies[spare], csrf)
        kept = await after.raw.get("/console/", headers={"Cookie": f"{COOKIE}={cookies[TOKEN]}"})
        assert kept.status_code == 200


# -- CSRF -----------------------------------------------------------------------------


@pytest.mark.parametrize("csrf", [None, "", "wrong"])
async def test_a_post_without_the_sessions_csrf_token_is_403_and_changes_nothing(
    console: Console, csrf: str | None
) -> None:
    form = {} if csrf is None else {"csrf": csrf}
    send = await console.post("/console/send", {**form, "to": "+46700000001", "text": "x"}, False)
    delete = await console.post("/console/gateways/sandbox/delete", form, csrf=False)
    switch = await console.post("/console/gateways/sandbox/active", {**form, "active": "0"}, False)
    assert send.status_code == delete.status_code == switch.status_code == 403
    assert await statuses(console.gw) == []
    accounts = (await console.gw.api.get("/v1/accounts")).json()["accounts"]
    assert [(a["name"], a["active"]) for a in accounts] == [("sandbox", True)]


async def test_another_sessions_csrf_token_is_refused(console: Console) -> None:
    async with httpx.AsyncClient(base_url=console.gw.url) as other:
        await sign_in(console.gw, other)
        theirs = field_value((await other.get("/console/send")).text, "csrf")
    response = await console.post("/console/send", {"csrf": theirs, "to": "+46700000001"}, False)
    assert response.status_code == 403


# -- pages ----------------------------------------------------------------------------


async def test_every_page_renders_with_data_and_no_secret_or_token_in_it(
    console: Console,
) -> None:
    gw = console.gw
    for provider, credentials in SECRETS.items():
        await gw.add_account(
            name=f"{provider} I",
            provider=provider,
            credentials=credentials,
            base_url="http://127.0.0.1:9",
            active=False,
        )
    await gw.send(to=["+46700000001", "+46700000003"], text="Hello ✓")
    sandbox = (await gw.api.get("/v1/accounts/sandbox")).json()
    await gw.raw.post(
        sandbox["callback_urls"]["inbound"], json={"from": "+46701111111", "text": "hi"}
    )
    await gw.api.post("/v1/suppressions", json={"number": "+46702222222"})
    await eventually(lambda: _all_final(gw))
    [message] = (await gw.api.get("/v1/messages", params={"limit": 1})).json()["messages"]

    pages = {path: await console.page(path) for path in PAGES}
    pages["message"] = await console.page(f"/console/messages/{message['id']}")
    pages["fragment"] = await console.page("/console/", fragment="1")
    for provider in SECRETS:
        base = f"/console/gateways/{provider}%20I"
        pages[f"edit {provider}"] = await console.page(base)
        pages[f"balance {provider}"] = await console.page(f"{base}/balance")
    secrets = [v for c in SECRETS.values() for k, v in c.items() if v.startswith("SECRET")]
    for name, html in pages.items():
        for secret in [*secrets, TOKEN]:
            assert secret not in html, f"{secret} shown on {name}"

    general = pages["/console/"]
    assert "+46700000003" in general and "HTTP status code" in general
    assert "1 delivered and 1 failed in the last 24 hours" in general
    assert "Delivery rate" in general and "50.0%" in general
    assert "hi" in pages["/console/inbound"] and "+46702222222" in pages["/console/inbound"]
    assert "message.delivered" in pages["message"] or "message.undelivered" in pages["message"]
    gateways = pages["/console/gateways"]
    assert gateways.count("********") >= len(SECRETS) and "AC0123456789" in gateways
    assert "rm-user" in gateways and "Route Mobile" in gateways
    assert "/callbacks/connectel%20I/dlr?key=" in pages["edit connectel"]
    assert "unavailable" in pages["balance twilio"]


async def _all_final(gw: Gateway) -> bool:
    return all(is_final(Status(s)) for s in await statuses(gw))


async def test_history_shows_n_rows_from_settings_or_the_page_and_filters(
    tmp_path: Path,
) -> None:
    async with (
        running_gateway(tmp_path, web_history_rows=3) as gw,
        httpx.AsyncClient(base_url=gw.url) as http,
    ):
        await sign_in(gw, http)
        console = Console(gw, http)
        for n in range(5):
            await gw.send(to=f"+4670000000{n}", text=f"n{n}")
        await eventually(lambda: _all_final(gw))

        def shown(html: str) -> list[str]:
            return re.findall(r'<tr data-id="', html)

        assert len(shown(await console.page("/console/history"))) == 3
        assert len(shown(await console.page("/console/history", rows="5"))) == 5
        only = await console.page("/console/history", to="0046700000002")
        assert len(shown(only)) == 1 and "n2" in only
        delivered = await console.page("/console/history", status="delivered", rows="10")
        assert len(shown(delivered)) == 3  # those ending 0, 1 and 2
        none = await console.page("/console/history", account="ghost")
        assert shown(none) == []
        older = await console.page("/console/history", rows="2")
        cursor = re.search(r"cursor=(\d+)", older)
        assert cursor
        rest = await console.page("/console/history", rows="2", cursor=cursor[1])
        assert "n2" in rest and "n4" not in rest
        for params, field in (
            ({"rows": "0"}, "rows"),
            ({"rows": "x"}, "rows"),
            ({"status": "lost"}, "status"),
            ({"to": "nope"}, "to"),
        ):
            html = await console.page("/console/history", 422, **params)
            assert f'data-field="{field}"' in html and alert(html)


async def send_form(console: Console, **fields: str) -> dict[str, str]:
    """The Send page's form with its CSRF token and form key, filled with `fields`."""
    page = await console.page("/console/send")
    return {"csrf": field_value(page, "csrf"), "form_key": field_value(page, "form_key"), **fields}


async def test_sending_from_the_form_queues_through_the_api_path(console: Console) -> None:
    form = await send_form(
        console, to="+46700000001\r\n+46700000002, +46700000004", text="Line one\r\nline two €"
    )
    first = await console.http.post("/console/send", data=form)
    again = await console.http.post("/console/send", data=form)  # a reload resubmits
    assert first.status_code == again.status_code == 200
    links = re.findall(r"/console/messages/(\w+)", first.text)
    assert len(links) == 3 and re.findall(r"/console/messages/(\w+)", again.text) == links
    detail = await console.gw.message(links[0])
    expected = segment("Line one\nline two €")
    assert detail["text"] == "Line one\nline two €"
    assert (detail["encoding"], detail["segments"]) == (expected.encoding, expected.segments)
    assert len(await statuses(console.gw)) == 3


async def test_the_automation_box_sends_number_pipe_message(console: Console) -> None:
    form = await send_form(console, automation="46700000001|Hello | world")
    response = await console.http.post("/console/send", data=form)
    [message_id] = re.findall(r"/console/messages/(\w+)", response.text)
    detail = await console.gw.message(message_id)
    assert (detail["to"], detail["text"]) == ("+46700000001", "Hello | world")


@pytest.mark.parametrize(
    ("form", "field"),
    [
        ({"to": "+46700000001, nope", "text": "x"}, "to"),
        ({"to": "+46700000001", "text": ""}, "text"),
        ({"to": "+46700000001", "text": "x", "sender": "a@b"}, "sender"),
        ({"to": "+46700000001", "text": "x", "account": "ghost"}, "account"),
        ({"automation": "46700000001 no pipe"}, "automation"),
        ({}, "automation"),
    ],
)
async def test_a_bad_send_form_is_shown_again_with_its_error_and_sends_nothing(
    console: Console, form: dict[str, str], field: str
) -> None:
    response = await console.http.post("/console/send", data=await send_form(console, **form))
    assert response.status_code == 422
    assert f'data-field="{field}"' in response.text and alert(response.text)
    assert re.search(rf'name="{field}"[^>]*aria-invalid="true"', response.text)
    for value in form.values():
        assert value.split(",")[0] in response.text  # what was typed stays
    assert await statuses(console.gw) == []


async def test_a_message_page_shows_its_timeline_and_a_missing_one_is_404(
    console: Console,
) -> None:
    [sent] = await console.gw.send(to="+46700000001", text="tracked")
    await eventually(lambda: _all_final(console.gw))
    html = await console.page(f"/console/messages/{sent['id']}")
    events = re.findall(r"<strong>([a-z_.]+)</strong>", html)
    assert events[0] == "message.queued" and "message.delivered" in events
    assert "dlr.matched" in events and "data-live" not in html  # final: no more polling
    await console.page("/console/messages/nope", 404)


async def test_a_suppression_is_removed_from_the_inbound_page(console: Console) -> None:
    await console.gw.api.post("/v1/suppressions", json={"number": "+46702222222"})
    response = await console.post("/console/suppressions/remove", {"number": "+46702222222"})
    assert response.status_code == 303
    assert (await console.gw.api.get("/v1/suppressions")).json()["suppressions"] == []
    assert "Removed" in await console.page("/console/inbound", removed="1")
    await console.page("/console/inbound", 422, rows="-1")


# -- gateways ---------------------------------------------------------------------------


async def test_a_gateway_is_added_edited_switched_and_deleted_with_secrets_kept(
    console: Console,
) -> None:
    gw = console.gw
    picker = await console.page("/console/gateways/new")
    assert all(f"provider={name}" in picker for name in HANDLERS)
    form = await console.page("/console/gateways/new", provider="twilio")
    assert 'name="credentials.account_sid"' in form and 'name="credentials.auth_token"' in form
    assert 'value="batch"' not in form  # Twilio sends one message per request

    created = await console.post(
        "/console/gateways/new",
        {
            "provider": "twilio",
            "name": "Twilio I",
            "credentials.account_sid": "AC42",
            "credentials.auth_token": "SECRET-first-token",
            "pattern": "loop",
            "priority": "7",
            "active": "on",
        },
    )
    assert created.status_code == 303 and created.headers["location"].endswith("?saved=1")
    edit = await console.page("/console/gateways/Twilio%20I")
    assert "SECRET-first-token" not in edit and 'value="AC42"' in edit
    assert "/callbacks/Twilio%20I/inbound?key=" in edit

    kept = await console.post(
        "/console/gateways/Twilio%20I",
        {"credentials.account_sid": "AC43", "credentials.auth_token": "", "pattern": "loop"},
    )
    assert kept.status_code == 303
    account = (await gw.api.get("/v1/accounts/Twilio I")).json()
    assert account["credentials"] == {"account_sid": "AC43", "auth_token": "********"}
    assert account["active"] is False  # the checkbox was left unticked
    assert await _stored_secret(gw, "Twilio I") == "SECRET-first-token"

    bad = await console.post(
        "/console/gateways/Twilio%20I",
        {"credentials.auth_token": "SECRET-typed-again", "priority": "soon", "pattern": "loop"},
    )
    assert bad.status_code == 422 and 'data-field="priority"' in bad.text
    assert "SECRET-typed-again" not in bad.text
    assert await _stored_secret(gw, "Twilio I") == "SECRET-first-token"

    switched = await console.post("/console/gateways/Twilio%20I/active", {"active": "1"})
    assert switched.status_code == 303
    assert (await gw.api.get("/v1/accounts/Twilio I")).json()["active"] is True

    confirm = await console.page("/console/gateways/Twilio%20I/delete")
    assert "Delete Twilio I?" in confirm
    deleted = await console.post("/console/gateways/Twilio%20I/delete", {})
    assert deleted.status_code == 303
    assert (await gw.api.get("/v1/accounts/Twilio I")).status_code == 404
    await console.page("/console/gateways/Twilio%20I", 404)


async def _stored_secret(gw: Gateway, name: str) -> str:
    """The stored token, which no page or API answer shows."""
    store = open_store(gw.settings, None)
    await store.open()
    try:
        account = await store.get_account(name)
    finally:
        await store.close()
    assert account is not None
    return account.credentials["auth_token"]


@pytest.mark.parametrize(
    ("form", "field"),
    [
        ({"name": "x", "credentials.account_sid": "AC1"}, "credentials.auth_token"),
        ({"name": "", "credentials.account_sid": "A", "credentials.auth_token": "t"}, "name"),
        (
            {
                "name": "x",
                "credentials.account_sid": "A",
                "credentials.auth_token": "t",
                "pattern": "batch",
            },
            "pattern",
        ),
        (
            {
                "name": "x",
                "credentials.account_sid": "A",
                "credentials.auth_token": "t",
                "options": "{",
            },
            "options",
        ),
        (
            {"name": "sandbox", "credentials.account_sid": "A", "credentials.auth_token": "t"},
            "name",
        ),
    ],
)
async def test_a_bad_gateway_form_is_shown_again_with_its_error(
    console: Console, form: dict[str, str], field: str
) -> None:
    response = await console.post("/console/gateways/new", {"provider": "twilio", **form})
    assert 400 <= response.status_code < 500 and alert(response.text)
    assert f'data-field="{field}"' in response.text
    names = [a["name"] for a in (await console.gw.api.get("/v1/accounts")).json()["accounts"]]
    assert names == ["sandbox"]


def test_every_providers_credentials_have_a_column_of_the_gateways_table() -> None:
    for handler in HANDLERS.values():
        columns = [credential.column for credential in handler.credentials]
        assert set(columns) <= set(COLUMNS), handler.name
        # A row has one cell a column: two credentials in one would hide one of them.
        assert len(set(columns)) == len(columns), handler.name


# -- the pieces ----------------------------------------------------------------------------


def test_the_chart_puts_delivered_and_failed_in_their_hours() -> None:
    now = datetime(2026, 12, 2, 18, 30, tzinfo=UTC)
    rows = [
        ("2026-12-02T18", Status.DELIVERED, 4),
        ("2026-12-02T18", Status.EXPIRED, 1),
        ("2026-12-02T18", Status.FAILED, 1),
        ("2026-12-01T19", Status.DELIVERED, 2),
        ("2026-12-01T18", Status.DELIVERED, 9),  # 24 hours ago: outside the window
    ]
    chart = hourly_chart(rows, now)
    assert len(chart.hours) == 24 and chart.hours[0].label == "19"
    assert (chart.delivered, chart.failed, chart.peak) == (6, 2, 4)
    last = chart.hours[-1]
    assert (last.delivered.count, last.failed.count) == (4, 2)
    assert last.delivered.y == chart.top and last.failed.height == last.delivered.height / 2


def test_the_delivery_rate_counts_every_final_outcome() -> None:
    counters = {"delivered": 3, "undelivered": 0, "failed": 1}
    assert delivery_rate(counters) == 0.75
    assert delivery_rate({"delivered": 0, "undelivered": 0, "failed": 0}) is None
