"""The callback inbox: delivery-report callbacks stored before their 2xx, applied after.

`append` is all a callback's request waits for. `apply_pending` claims the oldest
stored callbacks (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so several processes share
the work) and applies their reports in one batch (`reports.apply_reports`), marking
them applied in the same transaction. Reading them back (`select`), replaying them
and pruning them after the retention (their reports stay) live here too.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import msgspec

from service.model import (
    InboxEntry,
    InboxFilter,
    InboxRecord,
    InboxState,
    KeyedReport,
    RawCallback,
    Report,
    Status,
    StoredReport,
)
from service.store import inbox
from service.store.reports import Incoming, apply_reports
from service.store.tx import IN_CHUNK, Read, Row, Tx, placeholders


def _json(value: Any) -> str:
    # msgspec: a third of json.dumps' time, on the path every callback waits for.
    return msgspec.json.encode(value).decode()


_COLUMNS = (
    "id, account, received_at, applied_at, method, content_type, query, headers, body, "
    "reports, reply_ref"
)


def _encode_reports(reports: Sequence[KeyedReport]) -> str:
    return _json(
        [
            [
                k.report.request_id,
                k.report.status.value,
                k.report.recipient,
                k.report.error_code,
                k.report.error_text,
                k.report.reference,
                *k.key,
            ]
            for k in reports
        ]
    )


def _decode_reports(text: str) -> list[KeyedReport]:
    return [
        KeyedReport(Report(r[0], Status(r[1]), r[2], r[3], r[4], r[5]), (r[6], r[7]))
        for r in json.loads(text)
    ]


async def append(tx: Tx, entries: Sequence[InboxEntry]) -> None:
    await tx.executemany(
        "INSERT INTO callback_inbox (account, received_at, method, content_type, query, "
        "headers, body, reports, reply_ref) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                e.account,
                e.received_at,
                e.callback.method,
                e.callback.content_type,
                e.callback.query,
                _json(dict(e.callback.headers)),
                e.callback.body,
                _encode_reports(e.reports),
                e.reply_ref,
            )
            for e in entries
        ],
    )


async def apply_pending(tx: Tx, limit: int) -> int:
    """Apply the oldest `limit` stored callbacks not yet applied; how many there were."""
    claimed = await tx.fetchall(
        "SELECT id, account, reports, reply_ref FROM callback_inbox WHERE applied_at IS NULL "
        f"ORDER BY id LIMIT ?{tx.skip_locked('callback_inbox')}",
        (limit,),
    )
    await _apply(tx, claimed)
    return len(claimed)


async def _apply(tx: Tx, claimed: Sequence[Row]) -> None:
    items: list[Incoming] = []
    for inbox_id, account, encoded, reply_ref in claimed:
        reports = _decode_reports(encoded)
        if reply_ref and reports:
            first = reports[0]
            await inbox.adopt_request_id(tx, account, reply_ref, first.report.request_id, first.key)
        items.extend(Incoming(account, r.report, r.key, inbox_id=inbox_id) for r in reports)
    await apply_reports(tx, items)
    ids = [row[0] for row in claimed]
    for start in range(0, len(ids), IN_CHUNK):
        among, params = tx.among("id", ids[start : start + IN_CHUNK])
        await tx.execute(
            f"UPDATE callback_inbox SET applied_at = ? WHERE {among}", (time.time(), *params)
        )


async def replay(tx: Tx, ids: Sequence[int]) -> int:
    """Apply the stored callbacks `ids` again, in order; reports already applied are
    duplicates that change nothing, parked ones find their message if it is known now."""
    found: list[Row] = []
    for start in range(0, len(ids), IN_CHUNK):
        among, params = tx.among("id", sorted(ids)[start : start + IN_CHUNK])
        found.extend(
            await tx.fetchall(
                "SELECT id, account, reports, reply_ref FROM callback_inbox "
                f"WHERE {among} ORDER BY id{tx.FOR_UPDATE}",
                params,
            )
        )
    await _apply(tx, found)
    return len(found)


async def prune(tx: Tx, before: float) -> int:
    """Forget applied callbacks received before `before`; their reports stay."""
    return await tx.execute(
        "DELETE FROM callback_inbox WHERE received_at < ? AND applied_at IS NOT NULL",
        (before,),
    )


async def gauges(read: Read) -> tuple[int, float | None]:
    """How many callbacks wait to be applied, and when the oldest arrived."""
    rows = await read(
        "SELECT COUNT(*), MIN(received_at) FROM callback_inbox WHERE applied_at IS NULL", ()
    )
    return (rows[0][0], rows[0][1]) if rows else (0, None)


def _where(filters: InboxFilter, after: int, unmatched_before: float) -> tuple[str, list[Any]]:
    clauses: list[str] = ["i.id > ?"]
    params: list[Any] = [after]
    parked = "EXISTS (SELECT 1 FROM reports r WHERE r.inbox_id = i.id AND r.message_id IS NULL)"
    if filters.account:
        clauses.append("i.account = ?")
        params.append(filters.account)
    if filters.since is not None:
        clauses.append("i.received_at >= ?")
        params.append(filters.since)
    if filters.until is not None:
        clauses.append("i.received_at < ?")
        params.append(filters.until)
    if filters.ids:
        clauses.append(f"i.id IN ({placeholders(len(filters.ids))})")
        params.extend(filters.ids)
    state = filters.state
    if state is InboxState.PENDING:
        clauses.append("i.applied_at IS NULL")
    elif state is InboxState.APPLIED:
        clauses.append(f"i.applied_at IS NOT NULL AND NOT {parked}")
    elif state is InboxState.PARKED:
        clauses.append(f"i.applied_at IS NOT NULL AND {parked} AND i.received_at >= ?")
        params.append(unmatched_before)
    elif state is InboxState.UNMATCHED:
        clauses.append(f"i.applied_at IS NOT NULL AND {parked} AND i.received_at < ?")
        params.append(unmatched_before)
    return " AND ".join(clauses), params


async def select_ids(
    read: Read, filters: InboxFilter, after: int, limit: int, unmatched_before: float
) -> list[int]:
    where, params = _where(filters, after, unmatched_before)
    rows = await read(
        f"SELECT i.id FROM callback_inbox i WHERE {where} ORDER BY i.id LIMIT ?",
        (*params, limit),
    )
    return [row[0] for row in rows]


async def select(
    read: Read, filters: InboxFilter, after: int, limit: int, unmatched_before: float
) -> list[InboxRecord]:
    """Stored callbacks in id order after `after`, each with what became of its reports."""
    where, params = _where(filters, after, unmatched_before)
    found = await read(
        f"SELECT {', '.join('i.' + c.strip() for c in _COLUMNS.split(','))} "
        f"FROM callback_inbox i WHERE {where} ORDER BY i.id LIMIT ?",
        (*params, limit),
    )
    if not found:
        return []
    ids = [row[0] for row in found]
    kept: dict[tuple[int, str, str, str, str], str | None] = {}
    for row in await read(
        "SELECT inbox_id, account, rid_key, rcpt_key, status, message_id FROM reports "
        f"WHERE inbox_id IN ({placeholders(len(ids))})",
        ids,
    ):
        kept[(row[0], row[1], row[2], row[3], row[4])] = row[5]
    return [_record(row, kept, unmatched_before) for row in found]


def _record(
    row: Row, kept: dict[tuple[int, str, str, str, str], str | None], unmatched_before: float
) -> InboxRecord:
    inbox_id, account, received_at, applied_at = row[0], row[1], row[2], row[3]
    late = received_at < unmatched_before
    reports: list[StoredReport] = []
    for keyed in _decode_reports(row[9]):
        lookup = (inbox_id, account, *keyed.key, keyed.report.status.value)
        if applied_at is None:
            reports.append(StoredReport(keyed.report, "pending"))
        elif lookup not in kept:
            reports.append(StoredReport(keyed.report, "duplicate"))
        elif kept[lookup] is None:
            reports.append(StoredReport(keyed.report, "unmatched" if late else "parked"))
        else:
            reports.append(StoredReport(keyed.report, "matched", kept[lookup] or ""))
    outcomes = {r.outcome for r in reports}
    if applied_at is None:
        state = InboxState.PENDING
    elif outcomes & {"parked", "unmatched"}:
        state = InboxState.UNMATCHED if late else InboxState.PARKED
    else:
        state = InboxState.APPLIED
    return InboxRecord(
        inbox_id,
        account,
        received_at,
        applied_at,
        state,
        RawCallback(row[4], row[5], row[6], json.loads(row[7]), row[8]),
        tuple(reports),
    )
