"""Delivery reports and the status changes they make.

Reports are applied in batches (`apply_reports`): the inbox's applier hands over up to
a few hundred at once, the poller one, a send answer the reports parked for it. A batch
locks its match keys, reads the matched messages and their parts in a few set-based
statements, applies the reports one by one in memory with `reconcile`'s rules, in the
order given, and writes what changed once: the new report rows, the parts, the
messages, the events and the counters. Applying a batch is the same as applying its
reports one at a time.

A report either matches the parts a send response recorded, or is parked until that
response arrives (`apply_parked`). `set_status` is the one place a message's status
moves outside this batch, with the same counter delta and event (`_status_changed`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from service import reconcile
from service.model import Report, ReportOutcome, Status
from service.store.tx import IN_CHUNK, Row, Tx, key_lock

Key = tuple[str, str]


async def set_status(
    tx: Tx, message_id: str, account: str, old: Status, new: Status, **data: Any
) -> None:
    """Move a message to `new` with its counter delta and its event."""
    row = await tx.fetchone(
        "UPDATE messages SET status = ?, updated_at = ? WHERE id = ? "
        "RETURNING submitted_at, client",
        (new.value, tx.now(), message_id),
    )
    if reconcile.is_final(new):
        await tx.execute("DELETE FROM polls WHERE message_id = ?", (message_id,))
    submitted_at, client = row if row else (None, None)
    await _status_changed(tx, message_id, (account, client), old, new, submitted_at, data)


async def _status_changed(
    tx: Tx,
    message_id: str,
    owners: tuple[str, str | None],
    old: Status,
    new: Status,
    submitted_at: float | None,
    data: dict[str, Any],
) -> None:
    """`owners`: the message's account, and its client (None: sent with an admin token)."""
    account, client = owners
    if reconcile.is_final(new) and submitted_at is not None:
        data["latency_ms"] = max(0, round((time.time() - submitted_at) * 1000))
    counted = reconcile.counted_as(new, str(data.get("error_code", "")))
    tx.add_counters(account, reconcile.counter_delta(old, counted), client)
    await tx.event(
        f"message.{new.value}",
        message_id,
        account,
        status=new.value,
        previous=old.value,
        **data,
    )


@dataclass(frozen=True, slots=True)
class Incoming:
    """A report to apply, with the match key its provider's handler gave it."""

    account: str
    report: Report
    key: Key
    inbox_id: int | None = None
    """The stored callback it came in, for a report from the inbox."""
    parked_id: int | None = None
    """Its stored row, for a report parked earlier and applied now."""


@dataclass(slots=True)
class _Message:
    id: str
    account: str
    client: str | None
    status: Status
    guessed: bool
    submitted_at: float | None
    error: tuple[str, str]
    parts: dict[int, Status] = field(default_factory=dict)
    keys: dict[int, Key] = field(default_factory=dict)
    changed_parts: set[int] = field(default_factory=set)
    moved: bool = False
    """Its status changed."""
    changed: bool = False
    """Its status, error or guess changed."""


class _Batch:
    """What a batch has read, and what it will write."""

    def __init__(self, tx: Tx) -> None:
        self.tx = tx
        self.messages: dict[str, _Message] = {}
        self.by_key: dict[tuple[str, Key], list[str]] = {}
        self.stored: dict[tuple[str, Key, Status], tuple[int, str | None]] = {}
        """(account, key, status) -> (report row id, message id) of reports kept."""
        self.new_rows: list[tuple[Any, ...]] = []
        self.matched_parked: list[tuple[str, int]] = []

    async def load(self, items: Sequence[Incoming]) -> None:
        account_keys = sorted({(i.account, i.key) for i in items})
        await self.tx.lock_all([key_lock(account, key) for account, key in account_keys])
        triples = [(account, *key) for account, key in account_keys]
        for row in await _select_by_keys(
            self.tx,
            "SELECT account, rid_key, rcpt_key, status, id, message_id FROM reports",
            triples,
        ):
            self.stored[(row[0], (row[1], row[2]), Status(row[3]))] = (row[4], row[5])
        found: set[str] = set()
        for row in await _select_by_keys(
            self.tx,
            "SELECT account, rid_key, rcpt_key, message_id FROM message_parts",
            triples,
        ):
            self.by_key.setdefault((row[0], (row[1], row[2])), []).append(row[3])
            found.add(row[3])
        for ids in self.by_key.values():
            ids.sort()
        await self.load_messages(found)

    async def load_messages(self, ids: Iterable[str]) -> None:
        """Read messages with their rows locked, in id order (reports for two parts of
        one message, taken in two processes, combine one after the other), then all
        their parts."""
        wanted = sorted(set(ids) - set(self.messages))
        for start in range(0, len(wanted), IN_CHUNK):
            ids, params = self.tx.among("id", wanted[start : start + IN_CHUNK])
            for row in await self.tx.fetchall(
                "SELECT id, account, client, status, guessed, submitted_at, error_code, "
                f"error_text FROM messages WHERE {ids} ORDER BY id{self.tx.FOR_UPDATE}",
                params,
            ):
                self.messages[row[0]] = _Message(
                    row[0], row[1], row[2], Status(row[3]), bool(row[4]), row[5], (row[6], row[7])
                )
            message_ids, params = self.tx.among("message_id", wanted[start : start + IN_CHUNK])
            for row in await self.tx.fetchall(
                "SELECT message_id, part, status, rid_key, rcpt_key FROM message_parts "
                f"WHERE {message_ids} ORDER BY message_id, part",
                params,
            ):
                message = self.messages[row[0]]
                message.parts[row[1]] = Status(row[2])
                message.keys[row[1]] = (row[3], row[4])

    async def write(self) -> None:
        tx = self.tx
        await tx.executemany(
            "INSERT INTO reports (account, rid_key, rcpt_key, status, request_id, recipient, "
            "error_code, error_text, received_at, message_id, reference, rcpt_digits, "
            "inbox_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            self.new_rows,
        )
        await tx.executemany("UPDATE reports SET message_id = ? WHERE id = ?", self.matched_parked)
        parts = [
            (m.parts[p].value, m.id, p)
            for m in self.messages.values()
            for p in sorted(m.changed_parts)
        ]
        await tx.executemany(
            "UPDATE message_parts SET status = ? WHERE message_id = ? AND part = ?", parts
        )
        changed = [m for m in self.messages.values() if m.changed]
        await tx.executemany(
            "UPDATE messages SET status = ?, updated_at = ?, error_code = ?, error_text = ?, "
            "guessed = ? WHERE id = ?",
            [
                (m.status.value, tx.now(), *m.error, int(m.guessed), m.id)
                for m in changed
                if m.moved
            ],
        )
        # Only the guess settled: updated_at stays when the status became final.
        await tx.executemany(
            "UPDATE messages SET error_code = ?, error_text = ?, guessed = ? WHERE id = ?",
            [(*m.error, int(m.guessed), m.id) for m in changed if not m.moved],
        )
        finals = sorted(m.id for m in changed if m.moved and reconcile.is_final(m.status))
        for start in range(0, len(finals), IN_CHUNK):
            polled, params = tx.among("message_id", finals[start : start + IN_CHUNK])
            await tx.execute(f"DELETE FROM polls WHERE {polled}", params)


async def _select_by_keys(
    tx: Tx, select: str, triples: Sequence[tuple[str, str, str]], also: str = ""
) -> list[Row]:
    """Rows of `select` whose (account, rid_key, rcpt_key) is one of `triples`, and
    that meet the condition `also`. `select` names account, rid_key and rcpt_key
    first. Asked by account and request ID, which the match index leads with (a
    row-value IN list is read by a scan on SQLite), then narrowed to the recipients."""
    wanted = set(triples)
    by_account: dict[str, list[str]] = {}
    for account, rid_key, _ in sorted(wanted):
        ids = by_account.setdefault(account, [])
        if not ids or ids[-1] != rid_key:
            ids.append(rid_key)
    found: list[Row] = []
    for account, rid_keys in by_account.items():
        for start in range(0, len(rid_keys), IN_CHUNK):
            among, params = tx.among("rid_key", rid_keys[start : start + IN_CHUNK])
            rows = await tx.fetchall(
                f"{select} WHERE account = ? AND {among}{also}", (account, *params)
            )
            found.extend(row for row in rows if (row[0], row[1], row[2]) in wanted)
    return found


async def apply_reports(tx: Tx, items: Sequence[Incoming]) -> list[ReportOutcome]:
    """Apply `items` in order: each is stored once (a second report with the same key
    and status is a duplicate that changes nothing), and moves the messages it matches,
    or is parked until its send answer is recorded."""
    if not items:
        return []
    batch = _Batch(tx)
    await batch.load(items)
    outcomes = [await _apply_one(batch, item) for item in items]
    await batch.write()
    return outcomes


async def apply_report(tx: Tx, account: str, report: Report, key: Key) -> ReportOutcome:
    [outcome] = await apply_reports(tx, [Incoming(account, report, key)])
    return outcome


async def _apply_one(batch: _Batch, item: Incoming) -> ReportOutcome:
    tx, report, account = batch.tx, item.report, item.account
    details = {
        "request_id": report.request_id,
        "status": report.status.value,
        "error_code": report.error_code,
    }
    matched = batch.by_key.get((account, item.key), [])
    parked_id = item.parked_id
    if parked_id is None:
        prior = batch.stored.get((account, item.key, report.status))
        if prior is not None:
            if prior[1] is not None or not matched or not prior[0]:
                await tx.event("dlr.duplicate", matched[0] if matched else "", account, **details)
                return ReportOutcome.DUPLICATE
            # Kept earlier while its message was unknown, and found now: a replay.
            parked_id = prior[0]
    if not matched:
        matched = await _adopt(batch, item)
    if parked_id is None:
        batch.stored[(account, item.key, report.status)] = (0, matched[0] if matched else None)
        batch.new_rows.append(
            (
                account,
                *item.key,
                report.status.value,
                report.request_id,
                report.recipient,
                report.error_code,
                report.error_text,
                tx.now(),
                matched[0] if matched else None,
                report.reference,
                reconcile.recipient_key(report.recipient),
                item.inbox_id,
            )
        )
    elif matched:
        batch.matched_parked.append((matched[0], parked_id))
    if not matched:
        if parked_id is None:
            await tx.event("dlr.unmatched", "", account, **details)
        return ReportOutcome.UNMATCHED
    for message_id in matched:
        await _apply_to_message(
            batch, batch.messages[message_id], item, parked=parked_id is not None
        )
    return ReportOutcome.MATCHED


async def _apply_to_message(
    batch: _Batch, message: _Message, item: Incoming, *, parked: bool
) -> None:
    """Apply a report to every part of `message` under its key."""
    tx, report = batch.tx, item.report
    ordered = list(message.parts)
    for part in [p for p in ordered if message.keys[p] == item.key]:
        new_part = reconcile.advance(message.parts[part], report.status)
        if new_part is not message.parts[part]:
            message.parts[part] = new_part
            message.changed_parts.add(part)
        combined = reconcile.combine_parts([message.parts[p] for p in ordered], ordered.index(part))
        old, guessed = message.status, message.guessed
        new = reconcile.advance(old, combined, guessed=guessed)
        await tx.event(
            "dlr.matched",
            message.id,
            item.account,
            request_id=report.request_id,
            status=report.status.value,
            error_code=report.error_code,
            error_text=report.error_text,
            applied=new is not old,
            parked=parked,
        )
        if new is not old:
            if new in reconcile.FAILURES or guessed:
                message.error = (report.error_code, report.error_text)
            message.status = new
            message.moved = message.changed = True
            await _status_changed(
                tx,
                message.id,
                (message.account, message.client),
                old,
                new,
                message.submitted_at,
                {
                    "request_id": report.request_id,
                    "error_code": report.error_code,
                    **({"corrected": True} if guessed else {}),
                },
            )
        if guessed and reconcile.is_final(combined):
            # The provider has spoken: its word stands from now on.
            message.guessed = False
            message.changed = True


async def _adopt(batch: _Batch, item: Incoming) -> list[str]:
    """The unresolved send this report finds (see `adopt_ambiguous`), loaded into the
    batch; [] when none fits."""
    found = await adopt_ambiguous(batch.tx, item.account, item.report, item.key)
    if not found:
        return []
    await batch.load_messages(found)
    for message_id in found:
        message = batch.messages[message_id]
        if item.key not in message.keys.values():
            message.parts[0] = Status.SENDING
            message.keys[0] = item.key
    batch.by_key[(item.account, item.key)] = found
    return found


async def apply_parked(tx: Tx, account: str, keys: Sequence[Key]) -> None:
    """Apply the reports that arrived before the send response which recorded `keys`,
    and mark them matched."""
    triples = [(account, *key) for key in sorted(set(keys))]
    if not triples:
        return
    parked = await _select_by_keys(
        tx, f"SELECT {_PARKED_COLUMNS} FROM reports", triples, " AND message_id IS NULL"
    )
    await _apply_stored(tx, account, sorted(parked, key=lambda row: row[3]))


_PARKED_COLUMNS = (
    "account, rid_key, rcpt_key, id, status, request_id, recipient, error_code, error_text, "
    "reference"
)
"""A stored report as `_apply_stored` reads it (the match key first, as
`_select_by_keys` wants)."""


async def _apply_stored(tx: Tx, account: str, rows: Sequence[Row]) -> None:
    """Apply reports kept earlier (rows of `_PARKED_COLUMNS`), in the order given."""
    await apply_reports(
        tx,
        [
            Incoming(
                account,
                Report(row[5], Status(row[4]), row[6], row[7], row[8], row[9]),
                (row[1], row[2]),
                parked_id=row[3],
            )
            for row in rows
        ],
    )


# A send whose outcome is unknown and that no report has yet found: it has no parts.
_AMBIGUOUS = (
    "SELECT id FROM messages m WHERE account = ? AND unknown_since IS NOT NULL "
    "AND NOT EXISTS (SELECT 1 FROM message_parts p WHERE p.message_id = m.id)"
)


async def adopt_ambiguous(tx: Tx, account: str, report: Report, key: Key) -> list[str]:
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
    return [message_id]


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
        f"SELECT {_PARKED_COLUMNS} FROM reports WHERE account = ? AND message_id IS NULL "
        "AND received_at >= ? AND (reference = ? OR (reference = '' AND rcpt_digits = ?)) "
        "ORDER BY id",
        (account, row[1], message_id, reconcile.recipient_key(row[0])),
    )
    await _apply_stored(tx, account, parked)
