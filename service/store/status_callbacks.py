"""Per-message status callbacks: queued with the status changes, claimed in order per
message, settled by their answers.

`queue` runs at the end of every write transaction (the store's `_work`), so a
delivery is committed with the status change it tells of, whichever code path made
the change: no change is lost to a crash and none is told twice. It reads the
transaction's own `message.<status>` events, which every status change writes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from service import reconcile
from service.callback_records import (
    DELIVERED,
    GAVE_UP,
    PENDING,
    STOPPED,
    CallbackAttempt,
    CallbackDue,
    CallbackRecord,
    CallbackTry,
)
from service.model import Event, Status, WebhookOutcome
from service.sealing import Sealer
from service.store.clients import unseal_secret
from service.store.tx import IN_CHUNK, Read, Tx

_STATUSES = frozenset(s.value for s in Status)
_SETTLED = {
    WebhookOutcome.DELIVERED: DELIVERED,
    WebhookOutcome.GAVE_UP: GAVE_UP,
    WebhookOutcome.GONE: STOPPED,
}


def _status_changes(events: Sequence[Event]) -> list[Event]:
    """The events that record a message reaching a status, in the order they happened."""
    return [
        e
        for e in events
        if e.message_id
        and e.data.get("status") in _STATUSES
        and e.event == f"message.{e.data['status']}"
    ]


async def queue(tx: Tx) -> None:
    """A delivery for each status change of this transaction that its message asked
    to be told of."""
    changes = _status_changes(tx.events)
    if not changes:
        return
    wanted = sorted({e.message_id for e in changes})
    found: dict[str, tuple[Any, ...]] = {}
    for start in range(0, len(wanted), IN_CHUNK):
        among, params = tx.among("id", wanted[start : start + IN_CHUNK])
        for row in await tx.fetchall(
            "SELECT id, callback_events, client_ref, segments, error_code, error_text "
            f"FROM messages WHERE {among} AND callback_url != '' "
            "AND callback_stopped_at IS NULL",
            params,
        ):
            found[row[0]] = row
    if not found:
        return
    now = time.time()
    rows = []
    for change in changes:
        message = found.get(change.message_id)
        status = Status(change.data["status"])
        if message is None or not reconcile.callback_wanted(message[1], status):
            continue
        rows.append((change.message_id, status.value, _body(change, status, message), now, now))
    await tx.executemany(
        "INSERT INTO status_callbacks (message_id, status, body, due_at, first_at) "
        "VALUES (?, ?, ?, ?, ?)",
        rows,
    )


def _body(change: Event, status: Status, message: tuple[Any, ...]) -> str:
    """What the receiver gets, fixed now: every attempt sends the same bytes."""
    error = reconcile.callback_error(
        status,
        str(change.data.get("error_code") or message[4]),
        str(change.data.get("error_text") or message[5]),
    )
    document = {
        "type": "message.status",
        "message_id": change.message_id,
        "client_ref": message[2],
        "status": status.value,
        "error": {"code": error[0], "message": error[1]} if error else None,
        "segments": message[3],
        "account": change.account,
        "timestamp": change.ts,
    }
    return json.dumps(document, separators=(",", ":"))


# Of a message's pending deliveries only the oldest may go: a later status is never
# told before an earlier one, even when the earlier one waits for a retry.
_CLAIMABLE = (
    "FROM status_callbacks c JOIN messages m ON m.id = c.message_id "
    "WHERE c.state = 'pending' AND c.due_at <= ? "
    "AND (c.claimed_until IS NULL OR c.claimed_until < ?) "
    "AND NOT EXISTS (SELECT 1 FROM status_callbacks e WHERE e.message_id = c.message_id "
    "AND e.state = 'pending' AND e.seq < c.seq)"
)


async def any_due(read: Read, now: float) -> bool:
    """Most passes find nothing due: a read settles that without a write transaction."""
    return bool(await read(f"SELECT 1 {_CLAIMABLE} LIMIT 1", (now, now)))


async def claim(
    tx: Tx, now: float, lease: float, limit: int, sealer: Sealer | None, gateway_secret: str
) -> list[CallbackDue]:
    """Claim due deliveries under a lease; each is signed with its message's client's
    secret, or `gateway_secret` for a message sent with an admin token."""
    found = await tx.fetchall(
        "SELECT c.seq, c.message_id, m.callback_url, m.client, "
        "(SELECT k.webhook_secret FROM clients k WHERE k.name = m.client), "
        f"c.body, c.attempts, c.first_at {_CLAIMABLE} "
        f"ORDER BY c.due_at, c.seq LIMIT ?{tx.skip_locked('c')}",
        (now, now, limit),
    )
    await tx.executemany(
        "UPDATE status_callbacks SET claimed_until = ?, attempts = attempts + 1 WHERE seq = ?",
        [(now + lease, row[0]) for row in found],
    )
    due = []
    for seq, message_id, url, client, sealed, body, attempts, first_at in found:
        if client is None:
            secret = gateway_secret
        else:
            # A deleted client leaves nothing to sign with: the worker gives up on it.
            secret = unseal_secret(sealed, sealer) if sealed else ""
        due.append(CallbackDue(seq, message_id, url, secret, body.encode(), attempts + 1, first_at))
    return due


async def record(tx: Tx, attempt: CallbackAttempt) -> None:
    """Settle or reschedule a delivery by its answer, and keep the answer. A 410 stops
    this message's callbacks: those pending are dropped and no more are queued."""
    if attempt.outcome is WebhookOutcome.GONE:
        # The message row first: a transaction changing its status holds that row
        # until it commits, so its delivery is in the table before the next statement
        # drops what is pending, and any later change finds the message stopped.
        await tx.execute(
            "UPDATE messages SET callback_stopped_at = COALESCE(callback_stopped_at, ?) "
            "WHERE id = ?",
            (tx.now(), attempt.message_id),
        )
    if attempt.outcome is WebhookOutcome.RETRY:
        changed = await tx.execute(
            "UPDATE status_callbacks SET due_at = ?, claimed_until = NULL "
            "WHERE seq = ? AND state = 'pending'",
            (attempt.retry_at, attempt.seq),
        )
    else:
        changed = await tx.execute(
            "UPDATE status_callbacks SET state = ?, claimed_until = NULL "
            "WHERE seq = ? AND state = 'pending'",
            (_SETTLED[attempt.outcome], attempt.seq),
        )
    if attempt.outcome is WebhookOutcome.GONE:
        await tx.execute(
            "UPDATE status_callbacks SET state = ?, claimed_until = NULL "
            "WHERE message_id = ? AND state = 'pending'",
            (STOPPED, attempt.message_id),
        )
    if not changed:
        return  # settled meanwhile by a process whose lease had run out
    await tx.execute(
        "INSERT INTO status_callback_attempts (callback_seq, message_id, at, http_status, "
        "error, outcome) VALUES (?, ?, ?, ?, ?, ?)",
        (
            attempt.seq,
            attempt.message_id,
            tx.now(),
            attempt.http_status,
            attempt.error,
            attempt.outcome.value,
        ),
    )


async def for_message(read: Read, message_id: str) -> list[CallbackRecord]:
    """A message's deliveries, oldest first, each with its answers."""
    tries: dict[int, list[CallbackTry]] = {}
    for seq, at, http_status, error, outcome in await read(
        "SELECT callback_seq, at, http_status, error, outcome FROM status_callback_attempts "
        "WHERE message_id = ? ORDER BY id",
        (message_id,),
    ):
        tries.setdefault(seq, []).append(CallbackTry(at, http_status, error, outcome))
    return [
        CallbackRecord(
            seq,
            status,
            state,
            due_at if state == PENDING else None,
            tuple(tries.get(seq, ())),
        )
        for seq, status, state, due_at in await read(
            "SELECT seq, status, state, due_at FROM status_callbacks WHERE message_id = ? "
            "ORDER BY seq",
            (message_id,),
        )
    ]
