"""Hostile input over real HTTP, per route family: deep nesting, digits of other
scripts, integers past every limit, NaN and Infinity, fields longer than any provider
sends. Each gets a clear 4xx, the keep-alive connection answers the next request, and
nothing stored changes (issue #16, items 1 and 9)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from starlette.types import Message, Receive, Scope, Send

from handlers import HANDLERS
from handlers.twilio import SIGNATURE_HEADER, signature
from service.accounts import declared_accounts
from service.errors import SettingsError
from service.middleware import BodyLimit
from tests.conftest import Gateway, error_of, eventually, running_gateway
from tests.databases import db_dump
from tests.fake_connectel import FakeConnectel
from tests.rig import CONNECTEL_TOKEN, account_fields, provider_loop
from tests.test_web import SECRETS, alert, field_value, sign_in

# Values put where a JSON body holds a field's value.
HOSTILE_JSON = {
    "30,000 [": b"[" * 30_000,
    "40 levels": b"[" * 40 + b"1" + b"]" * 40,
    "NaN": b"NaN",
    "Infinity": b"Infinity",
    "-Infinity": b"-Infinity",
    "5,000-digit integer": b"9" * 5_000,
    "integer past 64 bits": b"1" + b"0" * 30,
    "1e400": b"1e400",
}
# Text that str.isdigit() takes: superscript two, Arabic-Indic three and one,
# full-width three; then more digits than int() converts, and more than 64 bits hold.
HOSTILE_NUMBERS = ["\u00b2", "\u0663", "\uff13", "\u0661", "9" * 5_000, "1" + "0" * 30]

JSON_ROUTES = [
    ("POST", "/v1/messages", b'{"to": "+46700000001", "text": "hi", "client_ref": %b}'),
    ("POST", "/v1/accounts", b'{"name": "evil", "provider": "sandbox", "options": {"a": %b}}'),
    ("PATCH", "/v1/accounts/sandbox", b'{"options": {"a": %b}}'),
    ("POST", "/v1/webhooks", b'{"url": "https://example.com/hook", "description": %b}'),
    (
        "POST",
        "/v1/autoreplies",
        b'{"name": "r", "kind": "keyword", "pattern": "HI", "reply": "x", "position": %b}',
    ),
]


async def assert_refused(
    client: httpx.AsyncClient,
    case: str,
    method: str,
    url: str | httpx.URL,
    *,
    content: bytes | None = None,
    headers: Mapping[str, str] | Mapping[bytes, bytes] | None = None,
    json_error: bool = True,
) -> httpx.Response:
    """A 4xx (with the API's error body where `json_error`), and the same keep-alive
    connection answering the next request."""
    response = await client.request(method, url, content=content, headers=headers)
    assert 400 <= response.status_code < 500, (case, response.status_code, response.text[:300])
    if json_error:
        assert error_of(response)["message"], case
    stream = response.extensions.get("network_stream")
    again = await client.get("/healthz")
    assert again.status_code == 200, case
    assert stream is not None and again.extensions.get("network_stream") is stream, case
    return response


@pytest.fixture
async def every_provider(tmp_path: Path) -> AsyncIterator[Gateway]:
    """smsgw with one account of every provider besides the sandbox."""
    async with running_gateway(tmp_path) as gateway:
        for provider in HANDLERS:
            if provider != "sandbox":
                fields = account_fields(provider, provider, SECRETS[provider], "Hostile")
                await gateway.add_account(**fields)
        yield gateway


async def test_the_json_api_refuses_every_hostile_body(gateway: Gateway) -> None:
    before = await db_dump(gateway.settings)
    for method, path, template in JSON_ROUTES:
        for name, value in HOSTILE_JSON.items():
            await assert_refused(
                gateway.api,
                f"{method} {path} with {name}",
                method,
                path,
                content=template % value,
                headers={"content-type": "application/json"},
            )
    assert await db_dump(gateway.settings) == before


def _callback_headers(provider: str, url: str) -> dict[str, str]:
    headers = {"content-type": "application/json"}
    if provider == "twilio":
        headers[SIGNATURE_HEADER] = signature(SECRETS["twilio"]["auth_token"], url)
    return headers


def _signed_url(provider: str, url: str, body: bytes) -> str:
    """Twilio signs a JSON callback through the body's hash in its URL."""
    if provider != "twilio":
        return url
    return f"{url}&{urlencode({'bodySHA256': hashlib.sha256(body).hexdigest()})}"


async def test_every_providers_callbacks_refuse_every_hostile_body(
    every_provider: Gateway,
) -> None:
    gateway = every_provider
    before = await db_dump(gateway.settings)
    for provider in HANDLERS:
        urls = (await gateway.api.get(f"/v1/accounts/{provider}")).json()["callback_urls"]
        for kind in ("dlr", "inbound"):
            for name, value in HOSTILE_JSON.items():
                body = b'{"id": "m1", "status": %b, "statusInt": %b}' % (value, value)
                url = _signed_url(provider, urls[kind], body)
                response = await assert_refused(
                    gateway.raw,
                    f"{provider} {kind} with {name}",
                    "POST",
                    url,
                    content=body,
                    headers=_callback_headers(provider, url),
                )
                # Past the key and the signature: refused for what the body holds.
                assert response.status_code in (400, 422), (provider, kind, name)
    assert await db_dump(gateway.settings) == before


async def test_paging_and_event_positions_take_ascii_digits_only(gateway: Gateway) -> None:
    before = await db_dump(gateway.settings)
    for raw in HOSTILE_NUMBERS:
        for path in ("/v1/messages", "/v1/inbound", "/v1/events"):
            for param in ("limit", "cursor"):
                url = httpx.URL(path, params={param: raw})
                await assert_refused(gateway.api, f"{path}?{param}={raw[:8]}", "GET", url)
        for path in ("/v1/events", "/v1/events/stream"):
            url = httpx.URL(path, params={"after": raw})
            await assert_refused(gateway.api, f"{path}?after={raw[:8]}", "GET", url)
            await assert_refused(
                gateway.api,
                f"{path} with Last-Event-ID {raw[:8]}",
                "GET",
                path,
                headers={b"last-event-id": raw.encode()},
            )
    assert await db_dump(gateway.settings) == before


async def test_the_consoles_boxes_and_forms_refuse_hostile_numbers_and_json(
    gateway: Gateway,
) -> None:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as http:
        assert (await sign_in(gateway, http)).status_code == 303
        before = await db_dump(gateway.settings)
        for raw in HOSTILE_NUMBERS:
            for page in ("/console/history", "/console/inbound"):
                for param in ("rows", "cursor"):
                    response = await assert_refused(
                        http,
                        f"{page}?{param}={raw[:8]}",
                        "GET",
                        httpx.URL(page, params={param: raw}),
                        json_error=False,
                    )
                    assert alert(response.text), (page, param)
        form_page = (await http.get("/console/gateways/new", params={"provider": "sandbox"})).text
        csrf = field_value(form_page, "csrf")
        hostile_forms: list[dict[str, Any]] = [{"priority": raw} for raw in HOSTILE_NUMBERS]
        hostile_forms += [{"options": b'{"a": %b}' % v} for v in HOSTILE_JSON.values()]
        for hostile in hostile_forms:
            form = {"csrf": csrf, "provider": "sandbox", "name": "evil", **hostile}
            response = await assert_refused(
                http,
                f"gateway form {str(hostile)[:40]}",
                "POST",
                "/console/gateways/new",
                content=urlencode(form).encode(),
                headers={"content-type": "application/x-www-form-urlencoded"},
                json_error=False,
            )
            assert alert(response.text), hostile
        assert await db_dump(gateway.settings) == before


async def test_a_connectel_status_in_other_digits_is_refused_and_changes_nothing(
    tmp_path: Path,
) -> None:
    fake = FakeConnectel(CONNECTEL_TOKEN)
    fake.dlr_plan = []  # no reports of its own: only the hostile ones below arrive
    account = account_fields("conn", "connectel", {"token": CONNECTEL_TOKEN}, "IKEA")
    async with provider_loop(tmp_path, fake, account) as (gateway, _):
        [queued] = await gateway.send(to="+46700000001", text="hi", account="conn")

        async def submitted() -> dict[str, Any] | None:
            message = await gateway.message(queued["id"])
            return message if message["request_id"] else None

        message = await eventually(submitted)
        assert message is not None
        stats = await gateway.stats()
        before = await db_dump(gateway.settings)
        url = (await gateway.api.get("/v1/accounts/conn")).json()["callback_urls"]["dlr"]
        for raw in HOSTILE_NUMBERS:
            for status_int in (raw, f'"{raw}"'):
                if not raw.isascii() and status_int == raw:
                    continue  # a bare non-ASCII digit is not JSON at all
                body = b'{"requestid": "%b", "statusInt": %b, "statusStr": "DELIVRD"}' % (
                    message["request_id"].encode(),
                    status_int.encode(),
                )
                await assert_refused(
                    gateway.raw,
                    f"statusInt {status_int[:8]}",
                    "POST",
                    url,
                    content=body,
                    headers={"content-type": "application/json"},
                )
        assert (await gateway.message(queued["id"]))["status"] == message["status"]
        assert await gateway.stats() == stats
        assert await db_dump(gateway.settings) == before


LONG = 60_000
OVERSIZED_INBOUND = {
    "from of 60,000 digits": {"from": "4" * LONG, "text": "hi"},
    "from of 16 digits": {"from": "+4670000000000001", "text": "hi"},
    "alphanumeric from of 12": {"from": "ABCDEFGHIJKL", "text": "hi"},
    "to of 60,000 characters": {"from": "+46700000001", "to": "x" * LONG, "text": "hi"},
    "id of 60,000 characters": {"from": "+46700000001", "id": "i" * LONG, "text": "hi"},
    "text past 255 parts": {"from": "+46700000001", "text": "a" * (255 * 153 + 1)},
}
OVERSIZED_REPORTS = {
    "id of 60,000 characters": {"id": "i" * LONG, "status": "DELIVERED"},
    "recipient of 60,000 digits": {"id": "m1", "status": "DELIVERED", "to": "4" * LONG},
    "error code of 60,000 characters": {
        "id": "m1",
        "status": "UNDELIVERED",
        "error_code": "e" * LONG,
    },
}


async def test_callback_fields_longer_than_any_provider_sends_are_refused(
    gateway: Gateway,
) -> None:
    urls = (await gateway.api.get("/v1/accounts/sandbox")).json()["callback_urls"]
    before = await db_dump(gateway.settings)
    for kind, cases in (("inbound", OVERSIZED_INBOUND), ("dlr", OVERSIZED_REPORTS)):
        for name, fields in cases.items():
            response = await assert_refused(
                gateway.raw,
                f"{kind} {name}",
                "POST",
                urls[kind],
                content=json.dumps(fields).encode(),
                headers={"content-type": "application/json"},
            )
            assert response.status_code == 422 and error_of(response)["field"], (kind, name)
    assert await db_dump(gateway.settings) == before
    # Just within the bounds, the same fields are stored.
    longest = [
        {"from": "+467000000000001", "id": "i" * 128, "text": "a" * (255 * 153)},
        {"from": "ABCDEFGHIJK", "to": "0046700000000001", "text": "x"},
    ]
    for fields in longest:
        assert (await gateway.raw.post(urls["inbound"], json=fields)).status_code == 200
    stored = (await gateway.api.get("/v1/inbound")).json()["inbound"]
    assert sorted(i["from"] for i in stored) == ["+467000000000001", "ABCDEFGHIJK"]


@pytest.mark.parametrize(
    "options",
    [{"rate_per_second": "fast"}, {"rate_per_second": -1}, {"rate_per_second": True}],
)
async def test_an_options_rate_the_dispatcher_cannot_use_is_refused(
    gateway: Gateway, options: dict[str, Any]
) -> None:
    body = {"name": "evil", "provider": "sandbox", "options": options}
    response = await gateway.api.post("/v1/accounts", json=body)
    assert response.status_code == 422 and error_of(response)["field"] == "options.rate_per_second"
    assert [a["name"] for a in (await gateway.api.get("/v1/accounts")).json()["accounts"]] == [
        "sandbox"
    ]


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1979-05-27", "[[[[1]]]]"])
def test_a_gateways_files_options_must_be_what_json_carries(tmp_path: Path, value: str) -> None:
    path = tmp_path / "gateways.toml"
    deep = value.replace("[[[[1]]]]", "[" * 40 + "1" + "]" * 40)
    path.write_text(
        f'[[account]]\nname = "s"\nprovider = "sandbox"\n[account.options]\na = {deep}\n'
    )
    with pytest.raises(SettingsError, match="options"):
        declared_accounts(path, {})


@pytest.mark.parametrize(
    ("declared", "status"), [(b"9" * 5_000, 413), (b"\xc2\xb2", 200), (b"10", 200)]
)
async def test_a_content_length_of_any_size_is_read_without_a_crash(
    declared: bytes, status: int
) -> None:
    # uvicorn's own parser refuses these before the app; another server may not.
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "path": "/v1/messages", "headers": [(b"content-length", declared)]}
    await BodyLimit(app, limits=[], default=1_000)(scope, receive, send)
    assert sent[0]["status"] == status


NUL_BODIES = [
    ("POST", "/v1/messages", {"to": "+46700000001", "text": "a\x00b"}),
    ("POST", "/v1/messages", {"to": "+46700000001", "text": "hi", "client_ref": "r\x00"}),
    ("POST", "/v1/messages", {"to": "+46700000001", "text": "hi", "sender": "AC\x00ME"}),
    ("POST", "/v1/accounts", {"name": "n\x00l", "provider": "sandbox"}),
    ("POST", "/v1/accounts", {"name": "nul", "provider": "sandbox", "description": "\x00"}),
    ("POST", "/v1/accounts", {"name": "nul", "provider": "sandbox", "options": {"a": "\x00"}}),
    ("POST", "/v1/webhooks", {"url": "https://example.com/hook", "description": "\x00"}),
    ("POST", "/v1/webhooks", {"url": "https://example.com/h\x00ok"}),
    ("POST", "/v1/autoreplies", {"name": "r", "pattern": "H\x00I", "reply": "x"}),
    ("POST", "/v1/autoreplies", {"name": "r", "pattern": "HI", "reply": "x\x00"}),
    ("POST", "/v1/suppressions", {"number": "+4670000\x000001"}),
]


@pytest.mark.parametrize(("method", "path", "body"), NUL_BODIES)
async def test_a_nul_character_in_any_api_field_is_refused_or_stored_never_a_5xx(
    gateway: Gateway, method: str, path: str, body: dict[str, object]
) -> None:
    """PostgreSQL cannot store U+0000 in text and SQLite can: either store answers."""
    response = await gateway.api.request(method, path, json=body)
    assert response.status_code < 500, response.text
    assert (await gateway.api.get("/v1/stats")).status_code == 200


async def test_a_nul_character_in_a_console_form_is_never_a_5xx(gateway: Gateway) -> None:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as http:
        assert (await sign_in(gateway, http)).status_code == 303
        form_page = (await http.get("/console/gateways/new", params={"provider": "sandbox"})).text
        form = {"csrf": field_value(form_page, "csrf"), "provider": "sandbox"}
        form |= {"name": "nul", "description": "a\x00b"}
        response = await http.post("/console/gateways/new", data=form)
        assert response.status_code < 500, response.text
        shown = (await gateway.api.get("/v1/accounts/nul")).json()
        assert shown["description"] == "a\ufffdb"


@pytest.mark.parametrize(
    "url",
    [
        "/v1/messages?to=%2B4670%00",
        "/v1/messages?account=a%00",
        "/v1/messages/m%00",
        "/v1/inbound?x=%00",
    ],
)
async def test_a_nul_character_in_a_url_is_a_400_on_either_store(
    gateway: Gateway, url: str
) -> None:
    response = await gateway.api.get(url)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "bad_request"
