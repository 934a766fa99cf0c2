"""Clients: reading their settings from a request, issuing and revoking keys, and the
view the API shows (never a key or its hash; the secret only in the 201 of a create)."""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from service.delivery import new_secret
from service.errors import NotFound, ValidationFailed
from service.keyring import digest
from service.principals import SCOPES, Client, ClientKey, NewKey
from service.quotas import Usage, usage_view
from service.runtime import Runtime
from service.validation import http_url, json_object

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_NAME_RULE = "1-64 letters, digits, '_', '.' or '-', starting with a letter or digit"
_SETTINGS = {"active", "scopes", "accounts", "rate_per_second", "quota", "callback_url"}
_QUOTAS = {"day", "month"}
KEY_PREFIX = "smsgw_"
# Far above any provider's throughput or any month's traffic: a bound, not a policy.
_MAX_RATE = 1_000_000
_MAX_QUOTA = 10**12
FIRST_KEY = "default"


def new_key(name: str) -> tuple[NewKey, str]:
    """A key to store (hashed), and the key itself to show once."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    return NewKey("key_" + secrets.token_hex(8), name, digest(key)), key


def _name(value: Any, field: str) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise ValidationFailed(f"{field} must be {_NAME_RULE}", field=field)
    return value


def _scopes(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise ValidationFailed(
            f"scopes must be a non-empty list of {', '.join(SCOPES)}", field="scopes"
        )
    for index, scope in enumerate(value):
        if scope not in SCOPES:
            raise ValidationFailed(
                f"unknown scope {scope!r}; scopes are {', '.join(SCOPES)}",
                field=f"scopes[{index}]",
            )
    return tuple(s for s in SCOPES if s in value)


async def _accounts(rt: Runtime, value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        raise ValidationFailed(
            "accounts must be a non-empty list of account names, or null for every account",
            field="accounts",
        )
    for index, name in enumerate(value):
        if not isinstance(name, str) or await rt.directory.get(name) is None:
            raise ValidationFailed(f"no account named {name!r}", field=f"accounts[{index}]")
    return tuple(dict.fromkeys(value))


def _rate(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValidationFailed("rate_per_second must be a positive number", field="rate_per_second")
    if value > _MAX_RATE:
        raise ValidationFailed(
            f"rate_per_second must be at most {_MAX_RATE}", field="rate_per_second"
        )
    return float(value)


def _quota(value: Any, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_QUOTA:
        raise ValidationFailed(
            f"{field} must be a whole number from 0 to {_MAX_QUOTA}, or null", field=field
        )
    return value


def _callback_url(value: Any) -> str:
    if value is None or value == "":
        return ""
    return http_url(value, "callback_url")


async def _apply(rt: Runtime, client: Client, body: dict[str, Any]) -> Client:
    """`client` with the settings `body` gives; those it leaves out stay."""
    changes: dict[str, Any] = {}
    if "active" in body:
        if not isinstance(body["active"], bool):
            raise ValidationFailed("active must be true or false", field="active")
        changes["active"] = body["active"]
    if "scopes" in body:
        changes["scopes"] = _scopes(body["scopes"])
    if "accounts" in body:
        changes["accounts"] = await _accounts(rt, body["accounts"])
    if "rate_per_second" in body:
        changes["rate_per_second"] = _rate(body["rate_per_second"])
    if "quota" in body:
        quota = body["quota"]
        if quota is None:
            quota = {"day": None, "month": None}
        quota = json_object(quota, _QUOTAS)
        for period in sorted(_QUOTAS & set(quota)):
            changes[f"quota_{period}"] = _quota(quota[period], f"quota.{period}")
    if "callback_url" in body:
        changes["callback_url"] = _callback_url(body["callback_url"])
    return replace(client, **changes)


def client_view(client: Client, usage: dict[str, Any]) -> dict[str, Any]:
    """A client as the API shows it, with its `usage_view`."""
    return {
        "name": client.name,
        "active": client.active,
        "scopes": list(client.scopes),
        "accounts": None if client.accounts is None else list(client.accounts),
        "rate_per_second": client.rate_per_second,
        "quota": {"day": client.quota_day, "month": client.quota_month},
        "callback_url": client.callback_url or None,
        "created_at": client.created_at,
        "keys": [key_view(k) for k in client.keys],
        "usage": usage,
    }


async def clients_shown(rt: Runtime, clients: Sequence[Client]) -> list[dict[str, Any]]:
    """`clients` as the API shows them, each with its usage now."""
    at = rt.clock()
    used = await rt.store.client_usage([c.name for c in clients], at)
    return [client_view(c, usage_view(used.get(c.name, Usage()), at)) for c in clients]


async def client_shown(rt: Runtime, client: Client) -> dict[str, Any]:
    [shown] = await clients_shown(rt, [client])
    return shown


def key_view(key: ClientKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "name": key.name,
        "created_at": key.created_at,
        "last_used_at": key.last_used_at,
        "revoked": key.revoked_at is not None,
    }


async def require_client(rt: Runtime, name: str) -> Client:
    found = await rt.store.get_client(name)
    if found is None:
        raise NotFound(f"no client named {name!r}", field="name")
    return found


async def create_client(rt: Runtime, body: Any) -> dict[str, Any]:
    """Store a new client with its first key: the one answer that shows the key and
    the webhook secret."""
    body = json_object(body, {"name", *_SETTINGS})
    if "name" not in body:
        raise ValidationFailed("name is required", field="name")
    draft = Client(name=_name(body["name"], "name"), webhook_secret=new_secret())
    client = await _apply(rt, draft, body)
    stored, key = new_key(FIRST_KEY)
    await rt.store.create_client(client, stored)
    created = await require_client(rt, client.name)
    shown = await client_shown(rt, created)
    return {**shown, "key": key, "webhook_secret": created.webhook_secret}


async def change_client(rt: Runtime, name: str, body: Any) -> Client:
    existing = await require_client(rt, name)
    changed = await _apply(rt, existing, json_object(body, _SETTINGS))
    if not await rt.store.update_client(changed):
        raise NotFound(f"no client named {name!r}", field="name")
    rt.keys.forget()
    return await require_client(rt, name)


async def remove_client(rt: Runtime, name: str) -> None:
    if not await rt.store.delete_client(name):
        raise NotFound(f"no client named {name!r}", field="name")
    rt.keys.forget()


async def issue_key(rt: Runtime, name: str, body: Any) -> dict[str, Any]:
    body = json_object(body, {"name"})
    stored, key = new_key(_name(body.get("name"), "name"))
    if not await rt.store.add_client_key(name, stored):
        raise NotFound(f"no client named {name!r}", field="name")
    return {"id": stored.id, "name": stored.name, "key": key}


async def revoke_key(rt: Runtime, name: str, key_id: str) -> None:
    await require_client(rt, name)
    if not await rt.store.revoke_client_key(name, key_id):
        raise NotFound(f"client {name!r} has no live key {key_id!r}", field="id")
    rt.keys.forget()
