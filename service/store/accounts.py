"""Gateway accounts: their rows, with credentials sealed at rest."""

from __future__ import annotations

from service.clock import iso_now
from service.errors import Conflict
from service.model import Account
from service.sealing import Sealer
from service.store import rows
from service.store.rows import ACCOUNT_COLUMNS
from service.store.tx import Read, Tx, placeholders


async def create(tx: Tx, account: Account, sealer: Sealer | None) -> None:
    now = iso_now()
    created = await tx.execute(
        f"INSERT INTO accounts ({ACCOUNT_COLUMNS}, created_at, updated_at) "
        f"VALUES ({placeholders(16)}) ON CONFLICT DO NOTHING",
        (*rows.account_values(account, sealer), now, now),
    )
    if not created:
        raise Conflict(f"account {account.name!r} exists", field="name")
    await tx.event("account.created", account=account.name, provider=account.provider)


async def get(read: Read, name: str, sealer: Sealer | None) -> Account | None:
    found = await read(f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE name = ?", (name,))
    return rows.account(found[0], sealer) if found else None


async def list_all(read: Read, sealer: Sealer | None) -> list[Account]:
    found = await read(f"SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY priority, name", ())
    return [rows.account(row, sealer) for row in found]


async def update(tx: Tx, account: Account, sealer: Sealer | None) -> None:
    values = rows.account_values(account, sealer)
    await tx.execute(
        "UPDATE accounts SET provider = ?, credentials = ?, sender = ?, "
        "fallback_sender = ?, active = ?, pattern = ?, priority = ?, base_url = ?, "
        "options = ?, callback_secret = ?, description = ?, logo_url = ?, "
        "signup_url = ?, updated_at = ? "
        "WHERE name = ?",
        (*values[1:], iso_now(), account.name),
    )
    await tx.event("account.updated", account=account.name)


async def delete(tx: Tx, name: str) -> bool:
    deleted = await tx.execute("DELETE FROM accounts WHERE name = ?", (name,))
    if deleted:
        await tx.event("account.deleted", account=name)
    return deleted > 0
