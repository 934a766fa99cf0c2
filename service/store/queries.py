"""Reads for the API, the console and metrics: messages, events, counters, gauges.

None of them writes; each runs outside any write transaction through a `Read`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from service import reconcile
from service.model import (
    Counters,
    Event,
    Gauges,
    MessageFilter,
    MessageRecord,
    Priority,
    Stats,
    Status,
)
from service.store import rows
from service.store.rows import EVENT_COLUMNS, M_COLUMNS, MESSAGE_COLUMNS
from service.store.tx import Read

FINAL_BY_HOUR = (
    "SELECT substr(updated_at, 1, 13), status, COUNT(*) FROM messages "
    "WHERE status IN ('delivered', 'undelivered', 'expired', 'rejected', 'failed') "
    "AND updated_at >= ? GROUP BY substr(updated_at, 1, 13), status ORDER BY 1"
)


async def _messages(read: Read, sql: str, params: tuple[Any, ...]) -> list[MessageRecord]:
    return [rows.message(row) for row in await read(sql, params)]


async def _events(read: Read, sql: str, params: tuple[Any, ...]) -> list[Event]:
    return [rows.event(row) for row in await read(sql, params)]


async def get_message(read: Read, message_id: str) -> MessageRecord | None:
    found = await _messages(
        read, f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ?", (message_id,)
    )
    return found[0] if found else None


async def list_messages(
    read: Read, filters: MessageFilter, limit: int, before_seq: int | None
) -> list[MessageRecord]:
    where: list[str] = []
    params: list[Any] = []
    for column, value in (
        ("status", filters.status),
        ("account", filters.account),
        ("recipient", filters.to),
        ("client", filters.client),
    ):
        if value:
            where.append(f"{column} = ?")
            params.append(value)
    if before_seq is not None:
        where.append("seq < ?")
        params.append(before_seq)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    return await _messages(
        read,
        f"SELECT {MESSAGE_COLUMNS} FROM messages {clause} ORDER BY seq DESC LIMIT ?",
        (*params, limit),
    )


async def due_messages(
    read: Read, now: float, limit: int, priorities: Sequence[Priority]
) -> list[MessageRecord]:
    """Up to `limit` due messages of each priority, lane after lane in `priorities`'
    order. One read per lane: each walks the outbox_lanes index in its own order and
    stops at `limit`, where one ordered read of all lanes would sort them all."""
    due: list[MessageRecord] = []
    for priority in priorities:
        due += await _messages(
            read,
            f"SELECT {M_COLUMNS} FROM outbox o JOIN messages m ON m.id = o.message_id "
            "WHERE o.lane = ? AND o.claimed_until IS NULL AND o.due_at <= ? "
            "ORDER BY o.due_at, o.seq LIMIT ?",
            (priority.lane, now, limit),
        )
    return due


async def message_events(read: Read, message_id: str) -> list[Event]:
    return await _events(
        read,
        f"SELECT {EVENT_COLUMNS} FROM events WHERE message_id = ? ORDER BY id",
        (message_id,),
    )


async def events_after(read: Read, after: int, limit: int, visible_events: str) -> list[Event]:
    """`visible_events` is the store's VISIBLE_EVENTS."""
    return await _events(
        read,
        f"SELECT {EVENT_COLUMNS} FROM events WHERE id > ?{visible_events} ORDER BY id LIMIT ?",
        (after, limit),
    )


_COUNTERS = ", ".join(reconcile.COUNTER_NAMES)


async def stats(read: Read, unmatched_before: str) -> Stats:
    found = await read(f"SELECT account, {_COUNTERS} FROM counters", ())
    accounts = {row[0]: Counters(*row[1:]) for row in found}
    unmatched = await read(
        "SELECT account, COUNT(*) FROM reports WHERE message_id IS NULL "
        "AND received_at < ? GROUP BY account",
        (unmatched_before,),
    )
    clients = await read(f"SELECT client, {_COUNTERS} FROM client_counters", ())
    total = sum(accounts.values(), Counters())
    return Stats(
        total,
        accounts,
        {row[0]: row[1] for row in unmatched},
        {row[0]: Counters(*row[1:]) for row in clients},
    )


async def client_counters(read: Read, client: str) -> Counters:
    found = await read(f"SELECT {_COUNTERS} FROM client_counters WHERE client = ?", (client,))
    return Counters(*found[0]) if found else Counters()


async def derive_counters(read: Read, owner: str = "account") -> dict[str, Counters]:
    """Counters recomputed from the messages table per `owner` column (`account` or
    `client`; messages of no client are left out)."""
    column = {"account": "account", "client": "client"}[owner]
    found = await read(
        f"SELECT {column}, status, error_code, COUNT(*) FROM messages "
        f"WHERE {column} IS NOT NULL GROUP BY {column}, status, error_code",
        (),
    )
    by_owner: dict[str, list[tuple[Status, int]]] = {}
    for name, status, error_code, count in found:
        counted = reconcile.counted_as(Status(status), error_code)
        by_owner.setdefault(name, []).append((counted, count))
    return {name: reconcile.derive_counters(pairs) for name, pairs in by_owner.items()}


async def final_by_hour(read: Read, since: str) -> list[tuple[str, Status, int]]:
    found = await read(FINAL_BY_HOUR, (since,))
    return [(hour, Status(status), count) for hour, status, count in found]


async def gauges(read: Read) -> Gauges:
    by_status = await read(
        "SELECT account, status, COUNT(*) FROM messages GROUP BY account, status", ()
    )
    [(outbox, backlog, depth, oldest)] = await read(
        "SELECT (SELECT COUNT(*) FROM outbox), (SELECT COUNT(*) FROM webhook_deliveries), "
        "(SELECT COUNT(*) FROM callback_inbox WHERE applied_at IS NULL), "
        "(SELECT MIN(received_at) FROM callback_inbox WHERE applied_at IS NULL)",
        (),
    )
    return Gauges({(row[0], row[1]): row[2] for row in by_status}, outbox, backlog, depth, oldest)
