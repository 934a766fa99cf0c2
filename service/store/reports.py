"""Delivery reports and the status changes they make.

A report either matches the parts a send response recorded, or is parked until that
response arrives (`apply_parked`); both paths apply it the same way. `set_status` is
the one place a message's status moves, with its counter delta and its event.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from service import reconcile
from service.model import Report, ReportOutcome, Status
from service.store.tx import Tx, key_lock, placeholders


async def set_status(
    tx: Tx, message_id: str, account: str, old: Status, new: Status, **data: Any
) -> None:
    """Move a message to `new` with its counter delta and its event."""
    row = await tx.fetchone(
        "UPDATE messages SET status = ?, updated_at = ? WHERE id = ? RETURNING submitted_at",
        (new.value, tx.now(), message_id),
    )
    if reconcile.is_final(new):
        await tx.execute("DELETE FROM polls WHERE message_id = ?", (message_id,))
        submitted_at = row[0] if row else None
        if submitted_at is not None:
            data["latency_ms"] = max(0, round((time.time() - submitted_at) * 1000))
    tx.add_counters(account, reconcile.counter_delta(old, new))
    await tx.event(
        f"message.{new.value}",
        message_id,
        account,
        status=new.value,
        previous=old.value,
        **data,
    )


async def apply_report(tx: Tx, account: str, report: Report, key: tuple[str, str]) -> ReportOutcome:
    # Serializes this report with its send response recorded elsewhere: either
    # the parts exist when the report looks for them, or the report is parked
    # when the response looks for parked reports.
    await tx.lock(key_lock(account, key))
    matched = await matched_messages(tx, account, key)
    report_id = await tx.insert(
        "INSERT INTO reports (account, rid_key, rcpt_key, status, request_id, "
        "recipient, error_code, error_text, received_at, message_id) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (
            account,
            *key,
            report.status.value,
            report.request_id,
            report.recipient,
            report.error_code,
            report.error_text,
            tx.now(),
            matched[0][0] if matched else None,
        ),
    )
    details = {
        "request_id": report.request_id,
        "status": report.status.value,
        "error_code": report.error_code,
    }
    if not report_id:
        message_id = matched[0][0] if matched else ""
        await tx.event("dlr.duplicate", message_id, account, **details)
        return ReportOutcome.DUPLICATE
    if not matched:
        await tx.event("dlr.unmatched", "", account, **details)
        return ReportOutcome.UNMATCHED
    await apply_to_messages(tx, account, report, key, matched, parked=False)
    return ReportOutcome.MATCHED


async def apply_parked(tx: Tx, account: str, keys: Sequence[tuple[str, str]]) -> None:
    """Apply the reports that arrived before the send response which recorded `keys`,
    and mark them matched."""
    for rid_key, rcpt_key in sorted(set(keys)):
        parked = await tx.fetchall(
            "SELECT id, status, request_id, recipient, error_code, error_text FROM reports "
            "WHERE account = ? AND rid_key = ? AND rcpt_key = ? AND message_id IS NULL "
            "ORDER BY id",
            (account, rid_key, rcpt_key),
        )
        if not parked:
            continue
        matched = await matched_messages(tx, account, (rid_key, rcpt_key))
        for row in parked:
            report = Report(row[2], Status(row[1]), row[3], row[4], row[5])
            matched = await apply_to_messages(
                tx, account, report, (rid_key, rcpt_key), matched, parked=True
            )
        await tx.execute(
            f"UPDATE reports SET message_id = ? WHERE id IN ({placeholders(len(parked))})",
            (matched[0][0] if matched else None, *(row[0] for row in parked)),
        )


async def matched_messages(tx: Tx, account: str, key: tuple[str, str]) -> list[tuple[str, Status]]:
    """The messages with a part under `key`, in id order, their rows locked: reports
    for two parts of one message, taken in two processes, combine one after the
    other."""
    rows = await tx.fetchall(
        "SELECT id, status FROM messages WHERE id IN (SELECT message_id FROM "
        "message_parts WHERE account = ? AND rid_key = ? AND rcpt_key = ?) "
        f"ORDER BY id{tx.FOR_UPDATE}",
        (account, *key),
    )
    return [(row[0], Status(row[1])) for row in rows]


async def apply_to_messages(
    tx: Tx,
    account: str,
    report: Report,
    key: tuple[str, str],
    matched: list[tuple[str, Status]],
    *,
    parked: bool,
) -> list[tuple[str, Status]]:
    """Apply a report to every part under `key` of the messages it matched; returns
    those messages with their statuses now."""
    after: list[tuple[str, Status]] = []
    for message_id, old in matched:
        # Read after the message row's lock (see matched_messages).
        rows = await tx.fetchall(
            "SELECT part, status, rid_key = ? AND rcpt_key = ? FROM message_parts "
            "WHERE message_id = ? ORDER BY part",
            (*key, message_id),
        )
        parts = {row[0]: Status(row[1]) for row in rows}
        ordered = list(parts)
        for part in (row[0] for row in rows if row[2]):
            new_part = reconcile.advance(parts[part], report.status)
            if new_part is not parts[part]:
                parts[part] = new_part
                await tx.execute(
                    "UPDATE message_parts SET status = ? WHERE message_id = ? AND part = ?",
                    (new_part.value, message_id, part),
                )
            combined = reconcile.combine_parts([parts[p] for p in ordered], ordered.index(part))
            new = reconcile.advance(old, combined)
            await tx.event(
                "dlr.matched",
                message_id,
                account,
                request_id=report.request_id,
                status=report.status.value,
                error_code=report.error_code,
                error_text=report.error_text,
                applied=new is not old,
                parked=parked,
            )
            if new is not old:
                if new in reconcile.FAILURES:
                    await tx.execute(
                        "UPDATE messages SET error_code = ?, error_text = ? WHERE id = ?",
                        (report.error_code, report.error_text, message_id),
                    )
                await set_status(
                    tx,
                    message_id,
                    account,
                    old,
                    new,
                    request_id=report.request_id,
                    error_code=report.error_code,
                )
                old = new
        after.append((message_id, old))
    return after
