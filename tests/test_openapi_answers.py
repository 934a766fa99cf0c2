"""/openapi.json describes the answers the API really gives.

A running smsgw is given one of everything (a delivered message, an inbound message, an
account, a rule, a suppression, a webhook, events), then every documented operation is
called over HTTP and its answer validated against the schema documented for its status.
Documented objects are closed for the check: a field the API returns but the document does
not name fails, which is how the document drifts.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema_rs
import pytest

from service.openapi import spec
from tests.conftest import Gateway, eventually

DOCUMENT = spec()


def _closed(schema: Any) -> Any:
    """`schema` with every object that lists its properties closed to others."""
    if isinstance(schema, list):
        return [_closed(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    closed = {key: _closed(value) for key, value in schema.items()}
    if "properties" in closed and "additionalProperties" not in closed:
        closed["additionalProperties"] = False
    return closed


def _objects_without_shape(schema: Any, where: str) -> Iterator[str]:
    """Places where the document says only "an object": nothing a client could rely on."""
    if isinstance(schema, list):
        for place, item in enumerate(schema):
            yield from _objects_without_shape(item, f"{where}[{place}]")
        return
    if not isinstance(schema, dict):
        return
    kinds = schema.get("type")
    is_object = kinds == "object" or (isinstance(kinds, list) and "object" in kinds)
    shaped = {"properties", "additionalProperties", "$ref", "oneOf", "anyOf"} & set(schema)
    if is_object and not shaped:
        yield where
    for key, value in schema.items():
        yield from _objects_without_shape(value, f"{where}/{key}")


def _answer_schema(path: str, method: str, status: int) -> dict[str, Any]:
    """The documented JSON schema of this answer, able to resolve the document's refs."""
    responses = DOCUMENT["paths"][path][method]["responses"]
    assert str(status) in responses, f"{method.upper()} {path} answered an undocumented {status}"
    response = responses[str(status)]
    if "$ref" in response:
        response = DOCUMENT["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
    schema = response["content"]["application/json"]["schema"]
    return {**copy.deepcopy(schema), "components": _closed(DOCUMENT["components"])}


def assert_documented(path: str, method: str, answer: httpx.Response) -> None:
    schema = _answer_schema(path, method, answer.status_code)
    errors = [
        f"{error.instance_path}: {error.message}"
        for error in jsonschema_rs.validator_for(_closed(schema)).iter_errors(answer.json())
    ]
    assert not errors, f"{method.upper()} {path} {answer.status_code}: {errors}"


def test_every_object_in_an_answer_is_documented_with_its_fields() -> None:
    shapeless = [
        place
        for path, operations in DOCUMENT["paths"].items()
        for method, operation in operations.items()
        for status, response in operation.get("responses", {}).items()
        for place in _objects_without_shape(
            response.get("content", {}).get("application/json", {}).get("schema"),
            f"{method.upper()} {path} {status}",
        )
    ] + list(_objects_without_shape(DOCUMENT["components"]["schemas"], "components"))
    assert shapeless == []


async def _one_of_everything(gateway: Gateway) -> dict[str, str]:
    """Ids of the things the document's paths name, after making one of each over HTTP."""
    [sent] = await gateway.send(to=["+46700000001"], text="Hello")

    async def delivered() -> bool:
        status: str = (await gateway.message(sent["id"]))["status"]
        return status == "delivered"

    await eventually(delivered)
    sandbox = (await gateway.api.get("/v1/accounts/sandbox")).json()
    inbound = {"from": "+46700000009", "to": "+46700000000", "text": "HELP", "id": "in-1"}
    assert (await gateway.raw.post(sandbox["callback_urls"]["inbound"], json=inbound)).is_success
    made = {
        "/v1/autoreplies": {"name": "help", "pattern": "HELP", "reply": "We can help."},
        "/v1/suppressions": {"number": "+46700000002"},
        "/v1/webhooks": {"url": "http://127.0.0.1:9/hook"},
        "/v1/accounts": {"name": "spare", "provider": "sandbox", "active": False},
        "/v1/clients": {"name": "shop", "accounts": ["sandbox"], "quota": {"day": 10}},
    }
    ids = {"id": sent["id"], "account": "sandbox", "name": "spare"}
    for path, body in made.items():
        answer = await gateway.api.post(path, json=body)
        assert_documented(path, "post", answer)
        ids.setdefault(path, str(answer.json().get("id", "")))
    ids["/v1/webhooks/{id}"] = ids.pop("/v1/webhooks")
    return ids


def _concrete(path: str, ids: dict[str, str]) -> str:
    names = {"/v1/autoreplies": "help", "/v1/clients/": "shop"}
    named = next((n for prefix, n in names.items() if path.startswith(prefix)), ids["name"])
    return (
        path.replace("{id}", ids.get(path, ids["id"]))
        .replace("{account}", ids["account"])
        .replace("{name}", named)
        .replace("{number}", "%2B46700000002")
    )


JSON_READS = sorted(
    path
    for path, operations in DOCUMENT["paths"].items()
    if "get" in operations
    and "application/json" in operations["get"]["responses"]["200"].get("content", {})
)


async def test_every_json_read_answers_what_the_document_says(gateway: Gateway) -> None:
    ids = await _one_of_everything(gateway)
    assert {"/v1/messages", "/v1/messages/{id}", "/v1/inbound", "/v1/stats"} <= set(JSON_READS)
    for path in JSON_READS:
        answer = await gateway.api.get(_concrete(path, ids))
        # The sandbox has no balance call: its refusal is the documented answer to check.
        assert answer.status_code == (404 if path == "/v1/balance/{account}" else 200), path
        assert_documented(path, "get", answer)


async def test_writes_and_refusals_answer_what_the_document_says(gateway: Gateway) -> None:
    sent = await gateway.api.post("/v1/messages", json={"to": ["+46700000001"], "text": "Hi"})
    assert_documented("/v1/messages", "post", sent)
    refused = await gateway.api.post("/v1/messages", json={"to": ["12"], "text": "Hi"})
    assert_documented("/v1/messages", "post", refused)
    missing = await gateway.api.get("/v1/messages/nonexistent")
    assert_documented("/v1/messages/{id}", "get", missing)
    patched = await gateway.api.patch("/v1/accounts/sandbox", json={"priority": 7})
    assert_documented("/v1/accounts/{name}", "patch", patched)


async def test_client_answers_are_what_the_document_says(gateway: Gateway) -> None:
    created = await gateway.api.post("/v1/clients", json={"name": "shop", "scopes": ["read"]})
    assert_documented("/v1/clients", "post", created)
    taken = await gateway.api.post("/v1/clients", json={"name": "shop"})
    assert_documented("/v1/clients", "post", taken)
    changed = await gateway.api.patch(
        "/v1/clients/shop", json={"callback_url": "https://x.example"}
    )
    assert_documented("/v1/clients/{name}", "patch", changed)
    refused = await gateway.api.patch("/v1/clients/shop", json={"scopes": ["root"]})
    assert_documented("/v1/clients/{name}", "patch", refused)
    issued = await gateway.api.post("/v1/clients/shop/keys", json={"name": "ci"})
    assert_documented("/v1/clients/{name}/keys", "post", issued)
    missing = await gateway.api.post("/v1/clients/ghost/keys", json={"name": "ci"})
    assert_documented("/v1/clients/{name}/keys", "post", missing)
    headers = {"Authorization": f"Bearer {issued.json()['key']}"}
    own = await gateway.raw.get("/v1/stats", headers=headers)
    assert own.status_code == 200
    assert_documented("/v1/stats", "get", own)
    forbidden = await gateway.raw.get("/v1/clients", headers=headers)
    assert forbidden.status_code == 403
    assert_documented("/v1/clients", "get", forbidden)


async def test_a_client_refused_for_its_quota_or_rate_gets_the_documented_429(
    gateway: Gateway,
) -> None:
    limits = {"name": "shop", "rate_per_second": 0.001}
    created = await gateway.api.post("/v1/clients", json=limits)
    headers = {"Authorization": f"Bearer {created.json()['key']}"}
    body = {"to": "+46700000001", "text": "Hi"}
    assert (await gateway.raw.post("/v1/messages", json=body, headers=headers)).is_success
    for change in ({}, {"rate_per_second": None, "quota": {"day": 1}}):
        await gateway.api.patch("/v1/clients/shop", json=change)
        refused = await gateway.raw.post("/v1/messages", json=body, headers=headers)
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
        assert_documented("/v1/messages", "post", refused)
    own = await gateway.raw.get("/v1/stats", headers=headers)
    assert_documented("/v1/stats", "get", own)


@pytest.mark.parametrize(
    ("answer", "undocumented"),
    [
        ({"id": "m", "status": "queued", "surprise": 1}, "surprise"),
        ({"id": "m", "status": "later"}, "later"),
    ],
)
def test_the_check_refuses_a_field_or_value_the_document_does_not_name(
    answer: dict[str, Any], undocumented: str
) -> None:
    response = httpx.Response(200, json=answer)
    with pytest.raises(AssertionError, match=undocumented):
        assert_documented("/v1/messages/{id}", "get", response)
