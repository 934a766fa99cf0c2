"""Clients and their API keys.

A key is stored only as its SHA-256 digest, so a database dump holds no usable key;
the webhook secret, which smsgw itself needs to sign with, is sealed at rest like an
account's credentials.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from service.errors import Conflict
from service.principals import Client, ClientKey, NewKey, Principal
from service.sealing import Sealer
from service.store.tx import Read, Tx, placeholders

_COLUMNS = (
    "name, active, scopes, accounts, rate_per_second, quota_day, quota_month, "
    "callback_url, webhook_secret, created_at"
)
_KEY_COLUMNS = "id, name, created_at, last_used_at, revoked_at"
_SEALED_FIELD = "webhook_secret"


def _seal(secret: str, sealer: Sealer | None) -> str:
    plain = {_SEALED_FIELD: secret}
    return sealer.seal(plain) if sealer else json.dumps(plain)


def unseal_secret(stored: str, sealer: Sealer | None) -> str:
    """A client's webhook secret as stored, opened."""
    opened: dict[str, str] = sealer.unseal(stored) if sealer else json.loads(stored)
    return opened[_SEALED_FIELD]


def _settings(client: Client) -> tuple[Any, ...]:
    """The columns a PATCH may change, in _COLUMNS order after the name."""
    return (
        int(client.active),
        ",".join(client.scopes),
        None if client.accounts is None else json.dumps(list(client.accounts)),
        client.rate_per_second,
        client.quota_day,
        client.quota_month,
        client.callback_url,
    )


def _client(row: Sequence[Any], keys: Sequence[ClientKey], sealer: Sealer | None) -> Client:
    return Client(
        name=row[0],
        active=bool(row[1]),
        scopes=tuple(filter(None, row[2].split(","))),
        accounts=None if row[3] is None else tuple(json.loads(row[3])),
        rate_per_second=row[4],
        quota_day=row[5],
        quota_month=row[6],
        callback_url=row[7],
        webhook_secret=unseal_secret(row[8], sealer),
        created_at=row[9],
        keys=tuple(keys),
    )


async def create(tx: Tx, client: Client, key: NewKey, sealer: Sealer | None) -> None:
    created = await tx.execute(
        f"INSERT INTO clients ({_COLUMNS}) VALUES ({placeholders(10)}) ON CONFLICT DO NOTHING",
        (client.name, *_settings(client), _seal(client.webhook_secret, sealer), tx.now()),
    )
    if not created:
        raise Conflict(f"client {client.name!r} exists", field="name", code="conflict")
    await _insert_key(tx, client.name, key)
    await tx.event("client.created", client=client.name)


async def _insert_key(tx: Tx, client: str, key: NewKey) -> None:
    await tx.execute(
        "INSERT INTO client_keys (id, client, name, digest, created_at) VALUES (?, ?, ?, ?, ?)",
        (key.id, client, key.name, key.digest, tx.now()),
    )


async def _keys(read: Read, names: Sequence[str]) -> dict[str, list[ClientKey]]:
    if not names:
        return {}
    found = await read(
        f"SELECT client, {_KEY_COLUMNS} FROM client_keys "
        f"WHERE client IN ({placeholders(len(names))}) ORDER BY created_at, id",
        tuple(names),
    )
    keys: dict[str, list[ClientKey]] = {}
    for row in found:
        keys.setdefault(row[0], []).append(ClientKey(*row[1:]))
    return keys


async def get(read: Read, name: str, sealer: Sealer | None) -> Client | None:
    found = await read(f"SELECT {_COLUMNS} FROM clients WHERE name = ?", (name,))
    if not found:
        return None
    return _client(found[0], (await _keys(read, [name])).get(name, []), sealer)


async def list_all(read: Read, sealer: Sealer | None) -> list[Client]:
    found = await read(f"SELECT {_COLUMNS} FROM clients ORDER BY name", ())
    keys = await _keys(read, [row[0] for row in found])
    return [_client(row, keys.get(row[0], []), sealer) for row in found]


async def update(tx: Tx, client: Client) -> bool:
    changed = await tx.execute(
        "UPDATE clients SET active = ?, scopes = ?, accounts = ?, rate_per_second = ?, "
        "quota_day = ?, quota_month = ?, callback_url = ? WHERE name = ?",
        (*_settings(client), client.name),
    )
    if changed:
        await tx.event("client.updated", client=client.name)
    return changed > 0


async def delete(tx: Tx, name: str) -> bool:
    """The client and its keys; its messages keep its name, and its counters stay."""
    await tx.execute("DELETE FROM client_keys WHERE client = ?", (name,))
    deleted = await tx.execute("DELETE FROM clients WHERE name = ?", (name,))
    if deleted:
        await tx.event("client.deleted", client=name)
    return deleted > 0


async def add_key(tx: Tx, client: str, key: NewKey) -> bool:
    """False when there is no such client."""
    if not await tx.fetchone(f"SELECT 1 FROM clients WHERE name = ?{tx.FOR_UPDATE}", (client,)):
        return False
    await _insert_key(tx, client, key)
    await tx.event("client.key_created", client=client, key_id=key.id)
    return True


async def revoke_key(tx: Tx, client: str, key_id: str) -> bool:
    """False when the client has no such key, or it was revoked already."""
    revoked = await tx.execute(
        "UPDATE client_keys SET revoked_at = ? WHERE id = ? AND client = ? AND revoked_at IS NULL",
        (tx.now(), key_id, client),
    )
    if revoked:
        await tx.event("client.key_revoked", client=client, key_id=key_id)
    return revoked > 0


async def principal(read: Read, digest: str) -> Principal | None:
    """Whom a live key of an active client acts for; None for any other key."""
    found = await read(
        "SELECT k.id, c.name, c.scopes, c.accounts FROM client_keys k "
        "JOIN clients c ON c.name = k.client "
        "WHERE k.digest = ? AND k.revoked_at IS NULL AND c.active = 1",
        (digest,),
    )
    if not found:
        return None
    key_id, name, scopes, accounts = found[0]
    return Principal(
        client=name,
        scopes=frozenset(filter(None, scopes.split(","))),
        accounts=None if accounts is None else tuple(json.loads(accounts)),
        key_id=key_id,
    )


async def touch_keys(tx: Tx, used: Sequence[tuple[str, str]]) -> None:
    """Record when keys were last used: (key id, when), only ever moving forward."""
    await tx.executemany(
        "UPDATE client_keys SET last_used_at = ? "
        "WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)",
        [(when, key_id, when) for key_id, when in used],
    )
