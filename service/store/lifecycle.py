"""A message's way out: queued, claimed from the outbox, sent, concluded, polled.

Each function runs inside the caller's transaction. What a send's answer changes in
the reports' world (parts to match, reports that came early) is left to `reports`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from service import reconcile
from service.clock import iso_now
from service.errors import Conflict
from service.model import (
    OPTED_OUT,
    OPTED_OUT_TEXT,
    Ambiguity,
    AttemptResult,
    Decision,
    NewMessage,
    PollDue,
    Status,
)
from service.store.reports import apply_parked, apply_parked_ambiguous, set_status
from service.store.tx import IN_CHUNK, Read, Tx, key_lock, placeholders

# A message whose recipient opted out before it could go. An auto-reply is spared
# only by a suppression older than itself: that is the opt-out's own confirmation.
_OPTED_OUT_SINCE_QUEUED = (
    "SELECT m.account, m.status FROM messages m JOIN suppressions s ON s.number = m.recipient "
    "WHERE m.id = ? AND (m.inbound_id IS NULL OR s.created_at > m.created_at)"
)


async def enqueue(
    tx: Tx,
    messages: Sequence[NewMessage],
    response: Mapping[str, Any],
    idempotency: tuple[str, str] | None,
) -> Mapping[str, Any]:
    if idempotency is not None:
        key, body_hash = idempotency
        # Insert first: of two requests racing with one key, the second waits
        # for the first to commit and then reads its answer.
        fresh = await tx.execute(
            "INSERT INTO idempotency (key, body_hash, response, created_at) "
            "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (key, body_hash, json.dumps(response), iso_now()),
        )
        if not fresh:
            seen = await tx.fetchone(
                "SELECT body_hash, response FROM idempotency WHERE key = ?", (key,)
            )
            assert seen is not None
            if seen[0] != body_hash:
                raise Conflict(
                    "Idempotency-Key was used with a different body",
                    field="Idempotency-Key",
                    code="idempotency_conflict",
                )
            stored: Mapping[str, Any] = json.loads(seen[1])
            return stored
    await insert_messages(tx, messages)
    return response


async def insert_messages(tx: Tx, messages: Sequence[NewMessage]) -> None:
    """New messages and their outbox rows; an opted-out recipient's message fails
    at once and never reaches the outbox."""
    now = iso_now()
    await tx.executemany(
        "INSERT INTO messages (id, account, recipient, sender, text, encoding, segments, "
        "status, client_ref, routed, inbound_id, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?)",
        [
            (
                m.id,
                m.account,
                m.to,
                m.sender,
                m.text,
                m.encoding,
                m.segments,
                m.client_ref,
                int(m.routed),
                m.inbound_id,
                now,
                now,
            )
            for m in messages
        ],
    )
    await tx.executemany(
        "INSERT INTO outbox (message_id, due_at) VALUES (?, 0)",
        [(m.id,) for m in messages if not m.opted_out],
    )
    for m in messages:
        await tx.event(
            "message.queued",
            m.id,
            m.account,
            status=Status.QUEUED.value,
            to=m.to,
            encoding=m.encoding,
            segments=m.segments,
            **({"inbound_id": m.inbound_id} if m.inbound_id is not None else {}),
        )
        if m.opted_out:
            await _fail_opted_out(tx, m.id, m.account, Status.QUEUED)


async def _fail_opted_out(tx: Tx, message_id: str, account: str, old: Status) -> None:
    await tx.execute(
        "UPDATE messages SET error_code = ?, error_text = ? WHERE id = ?",
        (OPTED_OUT, OPTED_OUT_TEXT, message_id),
    )
    await tx.execute("DELETE FROM outbox WHERE message_id = ?", (message_id,))
    await set_status(
        tx,
        message_id,
        account,
        old,
        Status.FAILED,
        error_code=OPTED_OUT,
        error_text=OPTED_OUT_TEXT,
    )


# -- the outbox ----------------------------------------------------------------------


async def claim(tx: Tx, message_ids: Sequence[str], now: float, lease: float) -> list[str]:
    free: set[str] = set()
    unique = sorted(set(message_ids))
    for start in range(0, len(unique), IN_CHUNK):
        chunk = unique[start : start + IN_CHUNK]
        rows = await tx.fetchall(
            "SELECT message_id FROM outbox WHERE claimed_until IS NULL AND message_id "
            f"IN ({placeholders(len(chunk))}) ORDER BY message_id"
            f"{tx.skip_locked('outbox')}",
            chunk,
        )
        free.update(row[0] for row in rows)
    won = []
    for message_id in (m for m in dict.fromkeys(message_ids) if m in free):
        await tx.execute(
            "UPDATE outbox SET claimed_until = ? WHERE message_id = ?",
            (now + lease, message_id),
        )
        opted_out = await tx.fetchone(_OPTED_OUT_SINCE_QUEUED, (message_id,))
        if opted_out is not None:
            await _fail_opted_out(tx, message_id, opted_out[0], Status(opted_out[1]))
            continue
        won.append(message_id)
        # No attempt is counted here: a claim may end without a request (an open
        # circuit, a missing account); `conclude` counts the requests that went out.
        row = await tx.fetchone(
            "UPDATE messages SET status = 'sending', "
            "updated_at = ? WHERE id = ? AND status = 'queued' RETURNING account",
            (iso_now(), message_id),
        )
        if row is not None:
            await tx.event("message.sending", message_id, row[0], status=Status.SENDING.value)
    return won


async def expire_claims(tx: Tx, now: float, ambiguity: Ambiguity) -> int:
    rows = await tx.fetchall(
        "SELECT message_id FROM outbox WHERE claimed_until < ? ORDER BY message_id"
        f"{tx.skip_locked('outbox')}",
        (now,),
    )
    for (message_id,) in rows:
        interrupted = AttemptResult(
            message_id,
            Decision.UNKNOWN,
            error_code="outcome_unknown",
            error_text="the send was interrupted; not resent to avoid a duplicate",
            requested=True,  # it may have gone out before the process died
            ambiguity=ambiguity,
        )
        await conclude(tx, interrupted)
    return len(rows)


async def record_attempts(tx: Tx, results: Sequence[AttemptResult]) -> None:
    for result in results:
        await conclude(tx, result)


async def _load(tx: Tx, message_id: str) -> tuple[str, Status] | None:
    """A message's account and status, its row locked until the transaction ends."""
    row = await tx.fetchone(
        f"SELECT account, status FROM messages WHERE id = ?{tx.FOR_UPDATE}", (message_id,)
    )
    return (row[0], Status(row[1])) if row else None


async def conclude(tx: Tx, result: AttemptResult) -> None:
    """Record one attempt's result; every decision stores the provider's answer."""
    loaded = await _load(tx, result.message_id)
    if loaded is None:
        return
    account, old = loaded
    await tx.execute(
        "UPDATE messages SET http_status = ?, http_response = ?, error_code = ?, "
        "error_text = ?, attempts = attempts + ? WHERE id = ?",
        (
            result.http_status,
            result.http_response,
            result.error_code,
            result.error_text,
            int(result.requested),
            result.message_id,
        ),
    )
    if result.decision is Decision.RETRY:
        await _reschedule(tx, account, result)
        return
    await tx.execute("DELETE FROM outbox WHERE message_id = ?", (result.message_id,))
    if result.decision is Decision.UNKNOWN:
        now = time.time()
        conclude_at = now + result.ambiguity.conclude_after
        await tx.execute(
            "UPDATE messages SET unknown_since = COALESCE(unknown_since, ?), match_until = ?, "
            "conclude_at = ? WHERE id = ?",
            (now, now + result.ambiguity.match_window, conclude_at, result.message_id),
        )
        await tx.event(
            "message.outcome_unknown",
            result.message_id,
            account,
            error_code=result.error_code,
            error_text=result.error_text,
            conclude_at=conclude_at,
        )
        await apply_parked_ambiguous(tx, result.message_id, account)
        return
    await _conclude_answered(tx, account, old, result)


async def _reschedule(tx: Tx, account: str, result: AttemptResult) -> None:
    await tx.execute(
        "UPDATE outbox SET due_at = ?, claimed_until = NULL WHERE message_id = ?",
        (result.retry_at, result.message_id),
    )
    details = {
        "error_code": result.error_code,
        "error_text": result.error_text,
        "http_status": result.http_status,
    }
    if result.new_account:
        # A new account starts its own count of attempts; the old one is remembered
        # so that failover never comes back to it.
        await tx.execute(
            "UPDATE messages SET account = ?, attempts = 0, tried = tried || ? WHERE id = ?",
            (result.new_account, f"{account},", result.message_id),
        )
        await tx.event(
            "message.failover",
            result.message_id,
            result.new_account,
            previous_account=account,
            **details,
        )
    elif result.new_sender:
        await tx.execute(
            "UPDATE messages SET sender = ? WHERE id = ?",
            (result.new_sender, result.message_id),
        )
        await tx.event(
            "message.fallback_sender",
            result.message_id,
            account,
            sender_id=result.new_sender,
            **details,
        )
    else:
        await tx.event(
            "message.retry", result.message_id, account, retry_at=result.retry_at, **details
        )


async def _conclude_answered(tx: Tx, account: str, old: Status, result: AttemptResult) -> None:
    """An accepted or refused message. Any request IDs the provider gave are kept,
    refused ones too, so that reports it sends for them later match and change
    nothing rather than wait as unmatched."""
    reached = result.status if result.decision is Decision.ACCEPTED else Status.FAILED
    request_id = ",".join(result.request_ids)
    for key in sorted(set(result.keys)):
        # Taken after the message's row lock, the reverse of apply_report; that
        # cannot deadlock, as a report meets this message's parts only once this
        # transaction has committed them.
        await tx.lock(key_lock(account, key))
    await tx.execute(
        "UPDATE messages SET request_id = ?, submitted_at = COALESCE(submitted_at, ?) WHERE id = ?",
        (
            request_id,
            time.time() if result.decision is Decision.ACCEPTED else None,
            result.message_id,
        ),
    )
    await tx.executemany(
        "INSERT INTO message_parts (message_id, part, account, request_id, rid_key, "
        "rcpt_key, status) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (result.message_id, part, account, rid, key[0], key[1], reached.value)
            for part, (rid, key) in enumerate(zip(result.request_ids, result.keys, strict=True))
        ],
    )
    if result.poll_at is not None:
        await tx.execute(
            "INSERT INTO polls (message_id, due_at, tries, since) VALUES (?, ?, 0, ?)",
            (result.message_id, result.poll_at, result.poll_at),
        )
    new = reconcile.advance(old, reached)
    if new is not old:
        await set_status(
            tx,
            result.message_id,
            account,
            old,
            new,
            request_id=request_id,
            error_code=result.error_code,
            error_text=result.error_text,
            http_status=result.http_status,
        )
    await apply_parked(tx, account, result.keys)


# -- sends whose outcome stayed unknown -------------------------------------------------


async def conclude_unresolved(tx: Tx, now: float, limit: int) -> int:
    """Conclude the unknown sends whose time ran out with no report (reconcile.UNRESOLVED),
    marked as smsgw's guess; those a report resolved meanwhile only lose their deadline."""
    rows = await tx.fetchall(
        "SELECT id, account, status FROM messages WHERE conclude_at <= ? "
        f"ORDER BY conclude_at LIMIT ?{tx.skip_locked('messages')}",
        (now, limit),
    )
    for message_id, account, status in rows:
        await tx.execute("UPDATE messages SET conclude_at = NULL WHERE id = ?", (message_id,))
        if Status(status) is not Status.SENDING:
            continue
        await tx.execute(
            "UPDATE messages SET guessed = 1, error_code = ?, error_text = ? WHERE id = ?",
            (reconcile.UNRESOLVED_CODE, reconcile.UNRESOLVED_TEXT, message_id),
        )
        await set_status(
            tx,
            message_id,
            account,
            Status.SENDING,
            reconcile.UNRESOLVED,
            error_code=reconcile.UNRESOLVED_CODE,
            error_text=reconcile.UNRESOLVED_TEXT,
        )
    return len(rows)


# -- polling ---------------------------------------------------------------------------


async def any_poll_due(read: Read, now: float) -> bool:
    """Most passes find nothing due: a read settles that without a write transaction."""
    return bool(await read("SELECT 1 FROM polls WHERE due_at <= ? LIMIT 1", (now,)))


async def claim_polls(tx: Tx, now: float, limit: int, lease: float) -> list[PollDue]:
    rows = await tx.fetchall(
        "SELECT message_id, due_at FROM polls WHERE due_at <= ? "
        f"ORDER BY due_at LIMIT ?{tx.skip_locked('polls')}",
        (now, limit),
    )
    # The lease: until the poller reschedules it, nobody else polls it; a
    # poller that died leaves it due again once the lease runs out.
    await tx.executemany(
        "UPDATE polls SET due_at = ? WHERE message_id = ?",
        [(now + lease, row[0]) for row in rows],
    )
    due = []
    for message_id, _ in rows:
        found = await tx.fetchone(
            "SELECT p.message_id, m.account, m.request_id, p.tries, p.since "
            "FROM polls p JOIN messages m ON m.id = p.message_id WHERE p.message_id = ?",
            (message_id,),
        )
        if found is not None:
            due.append(
                PollDue(
                    found[0],
                    found[1],
                    tuple(filter(None, found[2].split(","))),
                    found[3],
                    found[4],
                )
            )
    return due


async def reschedule_poll(tx: Tx, message_id: str, due_at: float | None) -> None:
    if due_at is None:
        gone = await tx.fetchone(
            "DELETE FROM polls WHERE message_id = ? RETURNING message_id",
            (message_id,),
        )
        if gone is not None:
            loaded = await _load(tx, message_id)
            await tx.event("message.poll_gave_up", message_id, loaded[0] if loaded else "")
        return
    await tx.execute(
        "UPDATE polls SET due_at = ?, tries = tries + 1 WHERE message_id = ?",
        (due_at, message_id),
    )
