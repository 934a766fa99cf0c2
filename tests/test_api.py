"""The /v1 API, over real HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from starlette.routing import Route

from service.app import create_app
from service.openapi import spec
from tests.conftest import Gateway, error_of, eventually, make_settings


async def test_every_v1_route_needs_a_valid_bearer_token(gateway: Gateway) -> None:
    for path in ("/v1/stats", "/v1/messages", "/v1/accounts", "/v1/inbound"):
        assert (await gateway.raw.get(path)).status_code == 401
        wrong = await gateway.raw.get(path, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and error_of(wrong)["code"] == "unauthorized"
    assert (await gateway.raw.get("/healthz")).status_code == 200
    assert (await gateway.raw.get("/readyz")).status_code == 200


async def test_sending_answers_202_with_e164_encoding_and_segments(gateway: Gateway) -> None:
    [message] = await gateway.send(to="0046 70-000 00 01", text="Привет" * 12)
    assert message["to"] == "+46700000001"
    assert (message["encoding"], message["segments"]) == ("UCS-2", 2)
    assert message["status"] == "queued" and message["account"] == "sandbox"


async def test_a_list_of_recipients_makes_one_message_each(gateway: Gateway) -> None:
    sent = await gateway.send(to=["+46700000001", "+46700000002"], text="€ hello")
    assert [m["to"] for m in sent] == ["+46700000001", "+46700000002"]
    assert {m["encoding"] for m in sent} == {"GSM-7"}
    assert len({m["id"] for m in sent}) == 2


async def test_the_automation_box_takes_number_pipe_message(gateway: Gateway) -> None:
    [message] = await gateway.send(automation="46700000001|Hello | world")
    detail = await gateway.message(message["id"])
    assert (detail["to"], detail["text"]) == ("+46700000001", "Hello | world")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"to": "+12", "text": "x"}, "to"),
        ({"to": ["+46700000001", "nope"], "text": "x"}, "to[1]"),
        ({"to": [], "text": "x"}, "to"),
        ({"to": "+46700000001", "text": ""}, "text"),
        ({"to": "+46700000001", "text": 5}, "text"),
        ({"to": "+46700000001", "text": "x" * 1601}, "text"),
        ({"to": "+46700000001", "text": "x", "sender": "TooLongSender1"}, "sender"),
        ({"to": "+46700000001", "text": "x", "sender": "a@b"}, "sender"),
        ({"to": "+46700000001", "text": "x", "account": "ghost"}, "account"),
        ({"to": "+46700000001", "text": "x", "colour": "red"}, "colour"),
        ({"automation": "46700000001 Hello"}, "automation"),
        ({"automation": "46700000001|Hi", "text": "x"}, "automation"),
        ([], "body"),
    ],
)
async def test_an_invalid_send_is_422_naming_the_field_and_stores_nothing(
    gateway: Gateway, body: Any, field: str
) -> None:
    response = await gateway.api.post("/v1/messages", json=body)
    assert response.status_code == 422
    assert error_of(response)["field"] == field
    assert (await gateway.api.get("/v1/messages")).json()["messages"] == []


async def test_a_body_that_is_not_json_is_400(gateway: Gateway) -> None:
    response = await gateway.api.post(
        "/v1/messages", content=b"{", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400 and error_of(response)["field"] == "body"
    response = await gateway.api.post("/v1/messages", content=b"\xff\xfe")
    assert response.status_code == 400


async def test_too_many_recipients_are_refused(gateway: Gateway) -> None:
    numbers = [f"+467000{n:05d}" for n in range(gateway.settings.max_recipients + 1)]
    response = await gateway.api.post("/v1/messages", json={"to": numbers, "text": "x"})
    assert response.status_code == 422 and error_of(response)["code"] == "too_many_recipients"


async def test_an_idempotency_key_returns_the_first_response(gateway: Gateway) -> None:
    body = {"to": "+46700000001", "text": "once"}
    headers = {"Idempotency-Key": "order-17"}
    first = await gateway.api.post("/v1/messages", json=body, headers=headers)
    again = await gateway.api.post("/v1/messages", json=body, headers=headers)
    assert first.status_code == again.status_code == 202
    assert first.json() == again.json()
    history = (await gateway.api.get("/v1/messages")).json()["messages"]
    assert len(history) == 1


async def test_an_idempotency_key_reused_with_another_body_is_409(gateway: Gateway) -> None:
    headers = {"Idempotency-Key": "order-18"}
    await gateway.api.post(
        "/v1/messages", json={"to": "+46700000001", "text": "a"}, headers=headers
    )
    response = await gateway.api.post(
        "/v1/messages", json={"to": "+46700000001", "text": "b"}, headers=headers
    )
    assert response.status_code == 409 and error_of(response)["field"] == "Idempotency-Key"


async def test_history_is_newest_first_with_filters_and_a_cursor(gateway: Gateway) -> None:
    for n in range(5):
        await gateway.send(to=f"+4670000000{n}", text=f"n{n}")
    page = (await gateway.api.get("/v1/messages", params={"limit": 3})).json()
    assert [m["text"] for m in page["messages"]] == ["n4", "n3", "n2"]
    rest = (
        await gateway.api.get("/v1/messages", params={"limit": 3, "cursor": page["next_cursor"]})
    ).json()
    assert [m["text"] for m in rest["messages"]] == ["n1", "n0"] and rest["next_cursor"] is None
    only = (await gateway.api.get("/v1/messages", params={"to": "+46700000002"})).json()
    assert [m["text"] for m in only["messages"]] == ["n2"]

    async def all_final() -> bool:
        page = (await gateway.api.get("/v1/messages", params={"status": "delivered"})).json()
        return len(page["messages"]) == 3  # numbers ending 0, 1, 2

    await eventually(all_final)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "x"}, "limit"),
        ({"cursor": "abc"}, "cursor"),
        ({"status": "lost"}, "status"),
    ],
)
async def test_bad_history_parameters_are_4xx(
    gateway: Gateway, params: dict[str, str], field: str
) -> None:
    response = await gateway.api.get("/v1/messages", params=params)
    assert response.status_code in (400, 422) and error_of(response)["field"] == field


async def test_an_unknown_message_or_route_is_404_in_the_error_shape(gateway: Gateway) -> None:
    assert (await gateway.api.get("/v1/messages/nope")).status_code == 404
    response = await gateway.api.get("/v1/nothing-here")
    assert response.status_code == 404 and error_of(response)["code"] == "not_found"


async def test_an_account_is_created_with_masked_secrets_and_callback_urls(
    gateway: Gateway,
) -> None:
    account = await gateway.add_account(
        name="connectel I",
        provider="connectel",
        credentials={"token": "s3cr3t-token"},
        sender="IKEA",
    )
    assert account["credentials"] == {"token": "********"}
    assert "s3cr3t-token" not in str(account)
    dlr = account["callback_urls"]["dlr"]
    assert dlr.startswith(f"{gateway.url}/callbacks/connectel%20I/dlr?key=")
    listed = (await gateway.api.get("/v1/accounts")).json()["accounts"]
    assert "s3cr3t-token" not in str(listed)
    assert {a["name"] for a in listed} == {"sandbox", "connectel I"}


async def test_an_account_is_patched_and_a_masked_secret_sent_back_is_kept(
    gateway: Gateway,
) -> None:
    await gateway.add_account(name="c", provider="connectel", credentials={"token": "t1"})
    response = await gateway.api.patch(
        "/v1/accounts/c",
        json={"active": False, "priority": 5, "credentials": {"token": "********"}},
    )
    assert response.status_code == 200
    assert (response.json()["active"], response.json()["priority"]) == (False, 5)
    send = await gateway.api.post(
        "/v1/messages", json={"to": "+46700000001", "text": "x", "account": "c"}
    )
    assert send.status_code == 422 and error_of(send)["field"] == "account"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "provider": "carrier-pigeon"}, "provider"),
        ({"name": "x", "provider": "connectel"}, "credentials.token"),
        (
            {"name": "x", "provider": "connectel", "credentials": {"token": "t", "pin": "1"}},
            "credentials.pin",
        ),
        ({"name": "a/b", "provider": "sandbox"}, "name"),
        ({"name": "x", "provider": "sandbox", "pattern": "spray"}, "pattern"),
        ({"name": "x", "provider": "sandbox", "base_url": "ftp://h"}, "base_url"),
        ({"name": "x", "provider": "sandbox", "priority": -1}, "priority"),
        ({"name": "x", "provider": "sandbox", "active": "yes"}, "active"),
    ],
)
async def test_an_invalid_account_is_422_naming_the_field(
    gateway: Gateway, body: dict[str, Any], field: str
) -> None:
    response = await gateway.api.post("/v1/accounts", json=body)
    assert response.status_code == 422 and error_of(response)["field"] == field


async def test_an_account_name_is_unique_and_can_be_deleted(gateway: Gateway) -> None:
    await gateway.add_account(name="dup", provider="sandbox")
    again = await gateway.api.post("/v1/accounts", json={"name": "dup", "provider": "sandbox"})
    assert again.status_code == 409
    assert (await gateway.api.delete("/v1/accounts/dup")).status_code == 204
    assert (await gateway.api.get("/v1/accounts/dup")).status_code == 404


async def test_balance_is_404_where_the_provider_has_no_balance_call(gateway: Gateway) -> None:
    response = await gateway.api.get("/v1/balance/sandbox")
    assert response.status_code == 404 and error_of(response)["code"] == "not_supported"


async def test_the_openapi_document_lists_the_routes(gateway: Gateway) -> None:
    spec = (await gateway.api.get("/openapi.json")).json()
    assert {"/v1/messages", "/v1/stats", "/v1/accounts/{name}"} <= set(spec["paths"])


def test_every_public_route_is_described_in_the_openapi_document() -> None:
    app = create_app(make_settings(Path("unused")))
    routes = {
        route.path
        for route in app.routes
        if isinstance(route, Route) and not route.path.startswith(("/callbacks/", "/sandbox"))
    }
    assert routes - {"/openapi.json"} == set(spec()["paths"])
