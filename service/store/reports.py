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

Matched = tuple[str, Status, bool]
"""A matched message: its id, its status and whether that status is smsgw's guess."""


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
    matched = await matched_messages(tx, account, key) or await adopt_ambiguous(
        tx, account, report, key
    )
    report_id = await tx.insert(
        "INSERT INTO reports (account, rid_key, rcpt_key, status, request_id, "
        "recipient, error_code, error_text, received_at, message_id, reference, "
        "rcpt_digits) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
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
            report.reference,
            reconcile.recipient_key(report.recipient),
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


async def matched_messages(tx: Tx, account: str, key: tuple[str, str]) -> list[Matched]:
    """The messages with a part under `key`, in id order, their rows locked: reports
    for two parts of one message, taken in two processes, combine one after the
    other."""
    rows = await tx.fetchall(
        "SELECT id, status, guessed FROM messages WHERE id IN (SELECT message_id FROM "
        "message_parts WHERE account = ? AND rid_key = ? AND rcpt_key = ?) "
        f"ORDER BY id{tx.FOR_UPDATE}",
        (account, *key),
    )
    return [(row[0], Status(row[1]), bool(row[2])) for row in rows]


# A send whose outcome is unknown and that no report has yet found: it has no parts.
_AMBIGUOUS = (
    "SELECT id FROM messages m WHERE account = ? AND unknown_since IS NOT NULL "
    "AND NOT EXISTS (SELECT 1 FROM message_parts p WHERE p.message_id = m.id)"
)


async def adopt_ambiguous(
    tx: Tx, account: str, report: Report, key: tuple[str, str]
) -> list[Matched]:
    """The send whose answer was lost that this report is about, given the report's
    key as its one part from now on; [] when no single message fits.

    Found by our reference when the provider echoed one (and then only by it), else by
    recipient among this account's unresolved sends still in their match window, when
    exactly one fits: two candidates would make it a guess.
    """
    if report.reference:
        rows = await tx.fetchall(f"{_AMBIGUOUS} AND id = ?", (account, report.reference))
        how = "reference"
    else:
        digits = reconcile.recipient_key(report.recipient)
        if not digits:
            return []
        rows = await tx.fetchall(
            f"{_AMBIGUOUS} AND recipient = ? AND match_until >= ? ORDER BY id LIMIT 2",
            (account, f"+{digits}", time.time()),
        )
        how = "recipient"
    if len(rows) != 1:
        return []
    message_id = rows[0][0]
    # A report racing this one for another key of the same message may have won: then
    # it keeps the message, and this one waits as unmatched.
    if not await tx.execute(
        "INSERT INTO message_parts (message_id, part, account, request_id, rid_key, "
        "rcpt_key, status) VALUES (?, 0, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (message_id, account, report.request_id, *key, Status.SENDING.value),
    ):
        return []
    await tx.execute(
        "UPDATE messages SET request_id = ? WHERE id = ?", (report.request_id, message_id)
    )
    await tx.event(
        "message.resolved", message_id, account, request_id=report.request_id, matched_by=how
    )
    return await matched_messages(tx, account, key)


async def apply_parked_ambiguous(tx: Tx, message_id: str, account: str) -> None:
    """A send just found ambiguous: apply the reports that arrived for it while its
    request was still out (by our reference, or by its recipient when no other
    unresolved send fits), parked then because nothing was known of it."""
    row = await tx.fetchone(
        "SELECT recipient, created_at FROM messages WHERE id = ?", (message_id,)
    )
    if row is None:
        return
    parked = await tx.fetchall(
        "SELECT id, status, request_id, recipient, error_code, error_text, reference, "
        "rid_key, rcpt_key FROM reports WHERE account = ? AND message_id IS NULL "
        "AND received_at >= ? AND (reference = ? OR (reference = '' AND rcpt_digits = ?)) "
        "ORDER BY id",
        (account, row[1], message_id, reconcile.recipient_key(row[0])),
    )
    for found in parked:
        report = Report(found[2], Status(found[1]), found[3], found[4], found[5], found[6])
        key = (found[7], found[8])
        await tx.lock(key_lock(account, key))
        matched = await matched_messages(tx, account, key) or await adopt_ambiguous(
            tx, account, report, key
        )
        if matched:
            await apply_to_messages(tx, account, report, key, matched, parked=True)
            await tx.execute(
                "UPDATE reports SET message_id = ? WHERE id = ?", (matched[0][0], found[0])
            )


async def apply_to_messages(
    tx: Tx,
    account: str,
    report: Report,
    key: tuple[str, str],
    matched: list[Matched],
    *,
    parked: bool,
) -> list[Matched]:
    """Apply a report to every part under `key` of the messages it matched; returns
    those messages with their statuses now."""
    after: list[Matched] = []
    for message_id, old, guessed in matched:
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
            new = reconcile.advance(old, combined, guessed=guessed)
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
                if new in reconcile.FAILURES or guessed:
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
                    **({"corrected": True} if guessed else {}),
                )
                old = new
            if guessed and reconcile.is_final(combined):
                # The provider has spoken: its word stands from now on.
                guessed = False
                await tx.execute("UPDATE messages SET guessed = 0 WHERE id = ?", (message_id,))
        after.append((message_id, old, guessed))
    return after
