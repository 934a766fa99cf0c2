"""Clients and their API keys, over real HTTP on both stores: what an admin manages,
what a client's key may do, and that a client sees nothing of another client."""

from __future__ import annotations

import base64
import hashlib
import itertools
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.keyring import KeyResolver
from service.principals import Principal
from service.store import open_store
from service.store.sql import SqlStore
from tests.conftest import TOKEN, Gateway, error_of, eventually, running_gateway


async def add_client(gateway: Gateway, **body: Any) -> dict[str, Any]:
    response = await gateway.api.post("/v1/clients", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


@asynccontextmanager
async def holding(gateway: Gateway, key: str) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client that carries a client's key."""
    async with httpx.AsyncClient(
        base_url=gateway.url, headers={"Authorization": f"Bearer {key}"}, timeout=10
    ) as client:
        yield client


async def stored_rows(gateway: Gateway, sql: str) -> list[tuple[Any, ...]]:
    store = open_store(gateway.settings, None)
    await store.open()
    try:
        return await cast(SqlStore, store)._fetchall(sql)
    finally:
        await store.close()


# -- managing clients ------------------------------------------------------------------


async def test_a_new_client_is_shown_with_its_first_key_and_secret_once(gateway: Gateway) -> None:
    created = await add_client(
        gateway,
        name="shop",
        scopes=["send", "read"],
        accounts=["sandbox"],
        rate_per_second=5,
        quota={"day": 100, "month": 1000},
        callback_url="https://shop.example/sms",
    )
    assert created["key"].startswith("smsgw_") and len(created["key"]) > 40
    assert created["webhook_secret"].startswith("whsec_")
    assert len(base64.b64decode(created["webhook_secret"].removeprefix("whsec_"))) >= 24
    shown = {k: v for k, v in created.items() if k not in ("key", "webhook_secret")}
    assert shown["scopes"] == ["send", "read"] and shown["accounts"] == ["sandbox"]
    assert shown["quota"] == {"day": 100, "month": 1000} and shown["rate_per_second"] == 5
    [key] = shown["keys"]
    assert set(key) == {"id", "name", "created_at", "last_used_at", "revoked"}
    assert (key["name"], key["revoked"]) == ("default", False)

    listed = (await gateway.api.get("/v1/clients")).json()["clients"]
    single = (await gateway.api.get("/v1/clients/shop")).json()
    assert listed == [shown] and single == shown
    for answer in (listed, single):
        assert created["key"] not in str(answer) and created["webhook_secret"] not in str(answer)


async def test_a_key_is_stored_as_its_hash_and_the_secret_sealed(gateway: Gateway) -> None:
    created = await add_client(gateway, name="shop")
    keys = await stored_rows(gateway, "SELECT * FROM client_keys")
    clients = await stored_rows(gateway, "SELECT * FROM clients")
    assert created["key"] not in str(keys) + str(clients)
    assert hashlib.sha256(created["key"].encode()).hexdigest() in str(keys)
    assert created["webhook_secret"].removeprefix("whsec_") not in str(clients)


async def test_a_client_is_changed_and_removed_by_name(gateway: Gateway) -> None:
    await add_client(gateway, name="shop", accounts=["sandbox"], quota={"day": 5})
    changed = await gateway.api.patch(
        "/v1/clients/shop",
        json={"active": False, "accounts": None, "quota": {"month": 9}, "callback_url": ""},
    )
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert (body["active"], body["accounts"], body["quota"]) == (
        False,
        None,
        {"day": 5, "month": 9},
    )
    assert (await gateway.api.delete("/v1/clients/shop")).status_code == 204
    assert (await gateway.api.get("/v1/clients/shop")).status_code == 404
    assert (await gateway.api.get("/v1/clients")).json()["clients"] == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": "has space"}, "name"),
        ({"name": "x" * 65}, "name"),
        ({"name": "../up"}, "name"),
        ({"name": 7}, "name"),
        ({"name": "c", "colour": "red"}, "colour"),
        ({"name": "c", "active": "yes"}, "active"),
        ({"name": "c", "scopes": []}, "scopes"),
        ({"name": "c", "scopes": "send"}, "scopes"),
        ({"name": "c", "scopes": ["send", "root"]}, "scopes[1]"),
        ({"name": "c", "accounts": []}, "accounts"),
        ({"name": "c", "accounts": ["ghost"]}, "accounts[0]"),
        ({"name": "c", "accounts": ["sandbox", 3]}, "accounts[1]"),
        ({"name": "c", "rate_per_second": 0}, "rate_per_second"),
        ({"name": "c", "rate_per_second": -1}, "rate_per_second"),
        ({"name": "c", "rate_per_second": True}, "rate_per_second"),
        ({"name": "c", "rate_per_second": 1e300}, "rate_per_second"),
        ({"name": "c", "quota": {"day": -1}}, "quota.day"),
        ({"name": "c", "quota": {"month": 1.5}}, "quota.month"),
        ({"name": "c", "quota": {"week": 1}}, "week"),
        ({"name": "c", "quota": 5}, "body"),
        ({"name": "c", "callback_url": "ftp://x.example/"}, "callback_url"),
        ({"name": "c", "callback_url": "javascript:alert(1)"}, "callback_url"),
        ({"name": "c", "callback_url": "https://"}, "callback_url"),
        ([], "body"),
    ],
)
async def test_a_bad_client_is_422_naming_the_field_and_stores_nothing(
    gateway: Gateway, body: Any, field: str
) -> None:
    response = await gateway.api.post("/v1/clients", json=body)
    assert response.status_code == 422, response.text
    assert error_of(response)["field"] == field
    assert (await gateway.api.get("/v1/clients")).json()["clients"] == []


async def test_a_bad_change_is_422_and_changes_nothing(gateway: Gateway) -> None:
    before = await add_client(gateway, name="shop")
    for body in ({"scopes": ["nope"]}, {"name": "other"}, {"quota": {"day": -5}}):
        response = await gateway.api.patch("/v1/clients/shop", json=body)
        assert response.status_code == 422, response.text
    after = (await gateway.api.get("/v1/clients/shop")).json()
    assert after == {k: v for k, v in before.items() if k not in ("key", "webhook_secret")}


async def test_a_taken_name_is_409_and_unknown_names_and_keys_are_404(gateway: Gateway) -> None:
    await add_client(gateway, name="shop")
    taken = await gateway.api.post("/v1/clients", json={"name": "shop"})
    assert taken.status_code == 409 and error_of(taken)["field"] == "name"
    for method, path, body in (
        ("GET", "/v1/clients/ghost", None),
        ("PATCH", "/v1/clients/ghost", {"active": False}),
        ("DELETE", "/v1/clients/ghost", None),
        ("POST", "/v1/clients/ghost/keys", {"name": "k"}),
        ("DELETE", "/v1/clients/ghost/keys/key_1", None),
        ("DELETE", "/v1/clients/shop/keys/key_1", None),
    ):
        response = await gateway.api.request(method, path, json=body)
        assert response.status_code == 404, (method, path, response.text)
        assert error_of(response)["code"] == "not_found"


# -- keys --------------------------------------------------------------------------------


async def test_more_keys_are_shown_once_and_a_revoked_key_is_refused_at_once(
    gateway: Gateway,
) -> None:
    first = await add_client(gateway, name="shop")
    response = await gateway.api.post("/v1/clients/shop/keys", json={"name": "ci"})
    assert response.status_code == 201, response.text
    second = response.json()
    assert set(second) == {"id", "name", "key"} and second["name"] == "ci"
    bad = await gateway.api.post("/v1/clients/shop/keys", json={"name": ""})
    assert bad.status_code == 422 and error_of(bad)["field"] == "name"
    async with holding(gateway, first["key"]) as one, holding(gateway, second["key"]) as two:
        assert (await one.get("/v1/messages")).status_code == 200
        assert (await two.get("/v1/messages")).status_code == 200
        revoked = await gateway.api.delete(f"/v1/clients/shop/keys/{second['id']}")
        assert revoked.status_code == 204
        refused = await two.get("/v1/messages")
        assert refused.status_code == 401 and error_of(refused)["code"] == "unauthorized"
        assert (await one.get("/v1/messages")).status_code == 200
    keys = (await gateway.api.get("/v1/clients/shop")).json()["keys"]
    assert [(k["name"], k["revoked"]) for k in keys] == [("default", False), ("ci", True)]
    assert keys[0]["last_used_at"] is not None
    again = await gateway.api.delete(f"/v1/clients/shop/keys/{second['id']}")
    assert again.status_code == 404


async def test_an_inactive_or_removed_client_s_keys_are_refused_at_once(gateway: Gateway) -> None:
    shop = await add_client(gateway, name="shop")
    async with holding(gateway, shop["key"]) as client:
        assert (await client.get("/v1/stats")).status_code == 200
        await gateway.api.patch("/v1/clients/shop", json={"active": False})
        assert (await client.get("/v1/stats")).status_code == 401
        await gateway.api.patch("/v1/clients/shop", json={"active": True})
        assert (await client.get("/v1/stats")).status_code == 200
        await gateway.api.delete("/v1/clients/shop")
        assert (await client.get("/v1/stats")).status_code == 401


async def test_a_change_made_in_another_process_takes_effect_within_seconds(
    tmp_path: Path,
) -> None:
    # Two smsgw processes' worth of apps on one store: each resolves keys on its own.
    async with running_gateway(tmp_path) as one, running_gateway(tmp_path) as two:
        shop = await add_client(one, name="shop")
        async with holding(two, shop["key"]) as client:
            assert (await client.get("/v1/stats")).status_code == 200
            await one.api.patch("/v1/clients/shop", json={"active": False})
            started = time.monotonic()

            async def refused() -> bool:
                return (await client.get("/v1/stats")).status_code == 401

            await eventually(refused, within=5)
            assert time.monotonic() - started < 3


# -- scopes ------------------------------------------------------------------------------


async def test_each_request_needs_its_scope(gateway: Gateway) -> None:
    reader = await add_client(gateway, name="reader", scopes=["read"])
    sender = await add_client(gateway, name="sender", scopes=["send"])
    admin = await add_client(gateway, name="ops", scopes=["admin"])
    message = {"to": "+46700000001", "text": "hi"}
    async with (
        holding(gateway, reader["key"]) as r,
        holding(gateway, sender["key"]) as s,
        holding(gateway, admin["key"]) as a,
    ):
        refused = await r.post("/v1/messages", json=message)
        assert refused.status_code == 403
        assert error_of(refused)["code"] == "insufficient_scope"
        assert "send" in error_of(refused)["message"]
        assert (await s.post("/v1/messages", json=message)).status_code == 202
        for path in ("/v1/messages", "/v1/stats"):
            assert (await r.get(path)).status_code == 200
            assert (await s.get(path)).status_code == 403
        for path in ("/v1/accounts", "/v1/clients", "/v1/webhooks", "/v1/reports", "/metrics"):
            assert (await r.get(path)).status_code == 403, path
            assert (await a.get(path)).status_code == 200, path
        assert (await r.post("/v1/clients", json={"name": "x"})).status_code == 403
        # Events are not yet kept per client: the log stays an admin's.
        assert (await r.get("/v1/events")).status_code == 403
    assert (await gateway.api.get("/v1/clients/x")).status_code == 404


async def test_a_client_cancels_its_own_messages_only(gateway: Gateway) -> None:
    """Cancelling takes the send scope; another client's message is as unknown as one
    that does not exist."""
    shop = await add_client(gateway, name="shop")
    other = await add_client(gateway, name="other")
    reader = await add_client(gateway, name="reader", scopes=["read"])
    later = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
    async with (
        holding(gateway, shop["key"]) as s,
        holding(gateway, other["key"]) as o,
        holding(gateway, reader["key"]) as r,
    ):
        sent = await s.post(
            "/v1/messages", json={"to": "+46700000001", "text": "hi", "send_at": later}
        )
        assert sent.status_code == 202, sent.text
        path = f"/v1/messages/{sent.json()['messages'][0]['id']}"
        assert (await o.delete(path)).status_code == 404
        assert (await r.delete(path)).status_code == 403
        assert (await s.get(path)).json()["status"] == "scheduled"
        cancelled = await s.delete(path)
        assert (cancelled.status_code, cancelled.json()["status"]) == (200, "cancelled")


async def test_admin_tokens_keep_doing_everything(gateway: Gateway) -> None:
    [sent] = await gateway.send(to="+46700000001", text="as before")
    assert (await gateway.message(sent["id"]))["client"] is None
    for path in ("/v1/accounts", "/v1/clients", "/v1/events", "/metrics", "/v1/messages"):
        assert (await gateway.api.get(path)).status_code == 200, path


# -- ownership and isolation -------------------------------------------------------------


async def test_a_client_sends_only_with_its_accounts_and_is_routed_among_them(
    gateway: Gateway,
) -> None:
    await gateway.add_account(name="second", provider="sandbox", priority=1)
    pinned = await add_client(gateway, name="pinned", accounts=["sandbox"])
    async with holding(gateway, pinned["key"]) as client:
        refused = await client.post(
            "/v1/messages", json={"to": "+46700000001", "text": "x", "account": "second"}
        )
        assert refused.status_code == 422 and error_of(refused)["field"] == "account"
        routed = await client.post("/v1/messages", json={"to": "+46700000001", "text": "x"})
        assert routed.status_code == 202
        assert routed.json()["messages"][0]["account"] == "sandbox"
    # An admin is routed by priority, as ever.
    [admin_sent] = await gateway.send(to="+46700000001", text="x")
    assert admin_sent["account"] == "second"
    assert (await gateway.api.get("/v1/messages")).json()["messages"][0]["client"] is None


async def test_admins_see_every_message_and_filter_by_client(gateway: Gateway) -> None:
    a = await add_client(gateway, name="a")
    b = await add_client(gateway, name="b")
    async with holding(gateway, a["key"]) as ca, holding(gateway, b["key"]) as cb:
        await ca.post("/v1/messages", json={"to": "+46700000001", "text": "from a"})
        await cb.post("/v1/messages", json={"to": "+46700000002", "text": "from b"})
    await gateway.send(to="+46700000003", text="from admin")
    every = (await gateway.api.get("/v1/messages")).json()["messages"]
    assert sorted(m["text"] for m in every) == ["from a", "from admin", "from b"]
    only_b = (await gateway.api.get("/v1/messages", params={"client": "b"})).json()["messages"]
    assert [(m["text"], m["client"]) for m in only_b] == [("from b", "b")]


async def test_idempotency_keys_are_per_client(gateway: Gateway) -> None:
    a = await add_client(gateway, name="a")
    b = await add_client(gateway, name="b")
    body = {"to": "+46700000001", "text": "same"}
    headers = {"Idempotency-Key": "order-1"}
    async with holding(gateway, a["key"]) as ca, holding(gateway, b["key"]) as cb:
        first = await ca.post("/v1/messages", json=body, headers=headers)
        other = await cb.post("/v1/messages", json=body, headers=headers)
        assert first.status_code == other.status_code == 202
        assert first.json()["messages"][0]["id"] != other.json()["messages"][0]["id"]
        # The same client's second key shares its first key's idempotency keys.
        second = await gateway.api.post("/v1/clients/a/keys", json={"name": "two"})
        async with holding(gateway, second.json()["key"]) as ca2:
            repeat = await ca2.post("/v1/messages", json=body, headers=headers)
        assert repeat.json() == first.json()
        listed = (await cb.get("/v1/messages")).json()["messages"]
        assert [m["id"] for m in listed] == [other.json()["messages"][0]["id"]]


_runs = itertools.count()
OPERATIONS = st.lists(
    st.tuples(
        st.sampled_from(("send", "list", "read_own", "read_other", "stats", "filter")),
        st.sampled_from(("a", "b")),
        st.integers(0, 9999),
    ),
    min_size=1,
    max_size=12,
)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(operations=OPERATIONS)
async def test_no_answer_to_one_client_holds_anything_of_another(
    gateway: Gateway, operations: list[tuple[str, str, int]]
) -> None:
    run = next(_runs)
    keys = {}
    for owner in ("a", "b"):
        keys[owner] = (await add_client(gateway, name=f"client-{owner}-{run}"))["key"]
    # Each client's numbers and texts are its own: a leak is a substring of an answer.
    prefix = {"a": "+4670100", "b": "+4670200"}
    sent: dict[str, list[dict[str, Any]]] = {"a": [], "b": []}
    answers: dict[str, list[str]] = {"a": [], "b": []}
    async with holding(gateway, keys["a"]) as ca, holding(gateway, keys["b"]) as cb:
        clients = {"a": ca, "b": cb}
        for operation, who, n in operations:
            other = "b" if who == "a" else "a"
            client = clients[who]
            if operation == "send":
                response = await client.post(
                    "/v1/messages",
                    json={"to": f"{prefix[who]}{n:04d}", "text": f"secret-{who}{run}-{n}"},
                )
                assert response.status_code == 202
                sent[who] += response.json()["messages"]
            elif operation == "list":
                response = await client.get("/v1/messages")
            elif operation == "read_own" and sent[who]:
                response = await client.get(f"/v1/messages/{sent[who][n % len(sent[who])]['id']}")
                assert response.status_code == 200
            elif operation == "read_other" and sent[other]:
                mine = sent[other][n % len(sent[other])]["id"]
                response = await client.get(f"/v1/messages/{mine}")
                assert response.status_code == 404
            elif operation == "filter":
                response = await client.get(
                    "/v1/messages", params={"client": f"client-{other}-{run}"}
                )
            else:
                response = await client.get("/v1/stats")
            answers[who].append(response.text)
    for who, other in (("a", "b"), ("b", "a")):
        seen = "\n".join(answers[who])
        for message in sent[other]:
            assert message["id"] not in seen
            assert message["to"] not in seen
        assert f"secret-{other}{run}" not in seen
        assert f"client-{other}-{run}" not in seen


# -- counters per client -----------------------------------------------------------------


async def test_stats_per_client_equal_what_its_messages_imply(gateway: Gateway) -> None:
    a = await add_client(gateway, name="a")
    await add_client(gateway, name="b")
    async with holding(gateway, a["key"]) as ca:
        # The sandbox refuses numbers ending in 9.
        for number in ("+46700000001", "+46700000002", "+46700000009"):
            sent = await ca.post("/v1/messages", json={"to": number, "text": "x"})
            assert sent.status_code == 202
        await gateway.send(to="+46700000008", text="admin's")

        async def all_final() -> dict[str, Any] | None:
            body: dict[str, Any] = (await gateway.api.get("/v1/stats")).json()
            total = body["total"]
            return body if total["requests"] == 4 and total["pending"] == 0 else None

        admin_view = await eventually(all_final)
        assert admin_view is not None
        own = (await ca.get("/v1/stats")).json()
    assert admin_view["clients"]["a"] == {
        "requests": 3,
        "accepted": 2,
        "failed": 1,
        "delivered": 2,
        "undelivered": 0,
        "pending": 0,
        "cancelled": 0,
    }
    assert "b" not in admin_view["clients"]
    assert own["total"] == admin_view["clients"]["a"] and set(own) == {"total", "usage"}
    assert TOKEN not in str(own)


# -- the key cache -------------------------------------------------------------------------


async def test_a_busy_key_costs_one_lookup_a_ttl_and_one_touch_a_minute() -> None:
    lookups: list[str] = []
    touches: list[str] = []
    shop = Principal("shop", frozenset({"send"}), key_id="key_1")

    async def lookup(digest: str) -> Principal | None:
        lookups.append(digest)
        return shop if digest == "known" else None

    async def touch(used: Sequence[tuple[str, str]]) -> None:
        touches.extend(key_id for key_id, _ in used)

    resolver = KeyResolver(ttl=60, touch_every=60)
    resolver.bind(lookup, touch)
    for _ in range(100):
        assert await resolver.resolve("known") == shop
    assert (lookups, touches) == (["known"], ["key_1"])
    # Unknown keys are never cached: a key issued a moment later works at once.
    assert await resolver.resolve("unknown") is None
    assert await resolver.resolve("unknown") is None
    assert lookups.count("unknown") == 2
    resolver.forget()
    assert await resolver.resolve("known") == shop
    assert lookups.count("known") == 2 and touches == ["key_1"]
