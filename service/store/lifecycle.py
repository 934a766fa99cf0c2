"""A message's way out: queued, claimed from the outbox, sent, concluded.

Each function runs inside the caller's transaction. What a send's answer changes in
the reports' world (parts to match, reports that came early) is left to `reports`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from service import reconcile
from service.clock import iso_now, iso_of
from service.errors import Conflict, NotFound
from service.model import (
    OPTED_OUT,
    OPTED_OUT_TEXT,
    Ambiguity,
    AttemptResult,
    Decision,
    NewMessage,
    Priority,
    Status,
)
from service.quotas import Charge
from service.store import usage
from service.store.reports import apply_parked, apply_parked_ambiguous, set_status
from service.store.tx import IN_CHUNK, Tx, finite, key_lock

# A message whose recipient opted out before it could go. An auto-reply is spared
# only by a suppression older than itself: that is the opt-out's own confirmation.
_OPTED_OUT_SINCE_QUEUED = (
    "SELECT m.id, m.account, m.status FROM messages m "
    "JOIN suppressions s ON s.number = m.recipient "
    "WHERE (m.inbound_id IS NULL OR s.created_at > m.created_at)"
)


async def enqueue(
    tx: Tx,
    messages: Sequence[NewMessage],
    response: Mapping[str, Any],
    idempotency: tuple[str, str] | None,
    charge: Charge | None = None,
) -> Mapping[str, Any]:
    """Queue `messages` and keep `response` for a repeat of the send; with a `charge`,
    first count them against the client's rate and quotas, all or none. A repeat is
    answered from the first send and counted no more."""
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
    if charge is not None:
        await usage.charge(tx, charge, sum(not m.opted_out for m in messages))
    await insert_messages(tx, messages, charged_at=charge.at if charge else None)
    return response


def first_status(message: NewMessage) -> Status:
    """A new message waits for its `send_at` when it has one, else it is queued now."""
    return Status.QUEUED if message.send_at is None else Status.SCHEDULED


async def insert_messages(
    tx: Tx, messages: Sequence[NewMessage], charged_at: float | None = None
) -> None:
    """New messages and their outbox rows; an opted-out recipient's message fails
    at once and never reaches the outbox. A scheduled message's row comes due at its
    `send_at`: the one claim every process makes sends it then, and only once. A
    message given no callback URL takes its client's default, as the client is now.
    `charged_at`: when the queued ones were counted against their client's quotas."""
    now = iso_now()
    await tx.executemany(
        "INSERT INTO messages (id, account, recipient, sender, text, encoding, segments, "
        "status, client_ref, routed, inbound_id, client, send_at, expires_at, priority, "
        "charged_at, created_at, updated_at, callback_events, callback_url) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
        "COALESCE(?, (SELECT callback_url FROM clients WHERE name = ?), ''))",
        [
            finite(
                (
                    m.id,
                    m.account,
                    m.to,
                    m.sender,
                    m.text,
                    m.encoding,
                    m.segments,
                    first_status(m).value,
                    m.client_ref,
                    int(m.routed),
                    m.inbound_id,
                    m.client,
                    m.send_at,
                    m.expires_at,
                    m.priority.value,
                    None if m.opted_out else charged_at,
                    now,
                    now,
                    m.callback_events,
                    m.callback_url,
                    m.client,
                )
            )
            for m in messages
        ],
    )
    await tx.executemany(
        "INSERT INTO outbox (message_id, due_at, lane, seq) "
        "SELECT id, ?, ?, seq FROM messages WHERE id = ?",
        [(m.send_at or 0, m.priority.lane, m.id) for m in messages if not m.opted_out],
    )
    for m in messages:
        status = first_status(m)
        await tx.event(
            f"message.{status.value}",
            m.id,
            m.account,
            status=status.value,
            to=m.to,
            encoding=m.encoding,
            segments=m.segments,
            **({"inbound_id": m.inbound_id} if m.inbound_id is not None else {}),
            **({"send_at": iso_of(m.send_at)} if m.send_at is not None else {}),
            **({"expires_at": iso_of(m.expires_at)} if m.expires_at is not None else {}),
            **({"priority": m.priority.value} if m.priority is not Priority.NORMAL else {}),
        )
        if m.opted_out:
            await _fail_opted_out(tx, m.id, m.account, status)


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


def _chunks(values: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(values), IN_CHUNK):
        yield values[start : start + IN_CHUNK]


async def claim(tx: Tx, message_ids: Sequence[str], now: float, lease: float) -> list[str]:
    """Claim the outbox rows of `message_ids` that nobody holds; the winners, in the
    order asked. Set-based: a claim of many messages costs a few statements, not a
    few per message."""
    free: set[str] = set()
    for chunk in _chunks(sorted(set(message_ids))):
        among, params = tx.among("message_id", chunk)
        rows = await tx.fetchall(
            f"SELECT message_id FROM outbox WHERE claimed_until IS NULL AND {among} "
            f"ORDER BY message_id{tx.skip_locked('outbox')}",
            params,
        )
        free.update(row[0] for row in rows)
    opted_out: set[str] = set()
    sending: dict[str, str] = {}
    for chunk in _chunks(sorted(free)):
        among, params = tx.among("message_id", chunk)
        await tx.execute(
            f"UPDATE outbox SET claimed_until = ? WHERE {among}", (now + lease, *params)
        )
        among, params = tx.among("m.id", chunk)
        for message_id, account, status in await tx.fetchall(
            f"{_OPTED_OUT_SINCE_QUEUED} AND {among} ORDER BY m.id", params
        ):
            opted_out.add(message_id)
            await _fail_opted_out(tx, message_id, account, Status(status))
        # Checked under the claim: whatever waited past its validity is never sent.
        opted_out.update(await _expire(tx, [m for m in chunk if m not in opted_out], now))
        # No attempt is counted here: a claim may end without a request (an open
        # circuit, a missing account); `record_attempts` counts the requests that went out.
        among, params = tx.among("id", [m for m in chunk if m not in opted_out])
        rows = await tx.fetchall(
            f"UPDATE messages SET status = 'sending', updated_at = ? WHERE {among} "
            "AND status IN ('queued', 'scheduled') RETURNING id, account",
            (iso_now(), *params),
        )
        sending.update((row[0], row[1]) for row in rows)
    won = [m for m in dict.fromkeys(message_ids) if m in free and m not in opted_out]
    for message_id in won:
        if message_id in sending:
            await tx.event(
                "message.sending", message_id, sending[message_id], status=Status.SENDING.value
            )
    return won


async def _expire(tx: Tx, message_ids: Sequence[str], now: float) -> list[str]:
    """End the messages among `message_ids` (their outbox rows held by this
    transaction) whose validity has run out: `expired`, never submitted."""
    if not message_ids:
        return []
    among, params = tx.among("id", message_ids)
    rows = await tx.fetchall(
        f"SELECT id, account, status FROM messages WHERE {among} AND expires_at <= ? "
        f"ORDER BY id{tx.FOR_UPDATE}",
        (*params, now),
    )
    for message_id, account, status in rows:
        await tx.execute(
            "UPDATE messages SET error_code = ?, error_text = ? WHERE id = ?",
            (reconcile.VALIDITY_EXPIRED, reconcile.VALIDITY_EXPIRED_TEXT, message_id),
        )
        await tx.execute("DELETE FROM outbox WHERE message_id = ?", (message_id,))
        await set_status(
            tx,
            message_id,
            account,
            Status(status),
            Status.EXPIRED,
            error_code=reconcile.VALIDITY_EXPIRED,
            error_text=reconcile.VALIDITY_EXPIRED_TEXT,
        )
    return [row[0] for row in rows]


async def expire_unsent(tx: Tx, now: float, limit: int) -> int:
    """End the messages waiting in the outbox past their validity, due or not (a
    retry or a schedule may lie beyond it); rows being claimed are left to the claim,
    which checks the same."""
    rows = await tx.fetchall(
        "SELECT o.message_id FROM outbox o JOIN messages m ON m.id = o.message_id "
        "WHERE m.expires_at <= ? AND o.claimed_until IS NULL "
        f"ORDER BY o.message_id LIMIT ?{tx.skip_locked('o')}",
        (now, limit),
    )
    return len(await _expire(tx, [row[0] for row in rows], now))


async def cancel(tx: Tx, message_id: str) -> Status | None:
    """Cancel a message nobody has claimed that is still scheduled or queued; None
    when it is cancelled, else its status (a message that does not exist has none
    and raises). The outbox row is deleted first and only while unclaimed: a claim
    and a cancel take that row in the same order, so exactly one of them wins, and a
    claimed message is never cancelled while its request may be going out. A
    cancelled message was never sent: its count goes back to its client's quotas."""
    gone = await tx.fetchone(
        "DELETE FROM outbox WHERE message_id = ? AND claimed_until IS NULL AND EXISTS "
        "(SELECT 1 FROM messages WHERE id = ? AND status IN ('scheduled', 'queued')) "
        "RETURNING message_id",
        (message_id, message_id),
    )
    found = await tx.fetchone(
        f"SELECT account, status, client, charged_at FROM messages WHERE id = ?{tx.FOR_UPDATE}",
        (message_id,),
    )
    if found is None:
        raise NotFound("no such message", field="id")
    account, status, client, charged_at = found[0], Status(found[1]), found[2], found[3]
    if gone is None:
        return status
    await set_status(tx, message_id, account, status, Status.CANCELLED)
    if client is not None and charged_at is not None:
        await usage.give_back(tx, client, charged_at)
    return None


async def release(tx: Tx, message_ids: Sequence[str]) -> None:
    for chunk in _chunks(sorted(set(message_ids))):
        among, params = tx.among("message_id", chunk)
        await tx.execute(f"UPDATE outbox SET claimed_until = NULL WHERE {among}", params)


async def expire_claims(tx: Tx, now: float, ambiguity: Ambiguity) -> int:
    rows = await tx.fetchall(
        "SELECT message_id FROM outbox WHERE claimed_until < ? ORDER BY message_id"
        f"{tx.skip_locked('outbox')}",
        (now,),
    )
    await record_attempts(
        tx,
        [
            AttemptResult(
                message_id,
                Decision.UNKNOWN,
                error_code="outcome_unknown",
                error_text="the send was interrupted; not resent to avoid a duplicate",
                requested=True,  # it may have gone out before the process died
                ambiguity=ambiguity,
            )
            for (message_id,) in rows
        ],
    )
    return len(rows)


async def record_attempts(tx: Tx, results: Sequence[AttemptResult]) -> None:
    """Record attempts' results; every decision stores the provider's answer. What
    every result needs is written for all of them at once, statement by statement."""
    ids = [r.message_id for r in results]
    if len(set(ids)) < len(ids):
        # A message twice: each result must see what the one before it did.
        for result in results:
            await record_attempts(tx, [result])
        return
    loaded = await _load(tx, ids)
    results = [r for r in results if r.message_id in loaded]
    await tx.executemany(
        "UPDATE messages SET http_status = ?, http_response = ?, error_code = ?, "
        "error_text = ?, attempts = attempts + ? WHERE id = ?",
        [
            (
                r.http_status,
                r.http_response,
                r.error_code,
                r.error_text,
                int(r.requested),
                r.message_id,
            )
            for r in results
        ],
    )
    for chunk in _chunks([r.message_id for r in results if r.decision is not Decision.RETRY]):
        among, params = tx.among("message_id", chunk)
        await tx.execute(f"DELETE FROM outbox WHERE {among}", params)
    answered = []
    for result in results:
        account, old = loaded[result.message_id]
        if result.decision is Decision.RETRY:
            await _reschedule(tx, account, result)
        elif result.decision is Decision.UNKNOWN:
            await _leave_unknown(tx, account, result)
        else:
            answered.append((account, old, result))
    await _conclude_answered(tx, answered)


async def conclude(tx: Tx, result: AttemptResult) -> None:
    """Record one attempt's result."""
    await record_attempts(tx, [result])


async def _load(tx: Tx, message_ids: Sequence[str]) -> dict[str, tuple[str, Status]]:
    """Messages' accounts and statuses by id, their rows locked (in id order) until
    the transaction ends."""
    loaded: dict[str, tuple[str, Status]] = {}
    for chunk in _chunks(sorted(message_ids)):
        among, params = tx.among("id", chunk)
        rows = await tx.fetchall(
            f"SELECT id, account, status FROM messages WHERE {among} ORDER BY id{tx.FOR_UPDATE}",
            params,
        )
        loaded.update((row[0], (row[1], Status(row[2]))) for row in rows)
    return loaded


async def _leave_unknown(tx: Tx, account: str, result: AttemptResult) -> None:
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


async def _conclude_answered(tx: Tx, answered: Sequence[tuple[str, Status, AttemptResult]]) -> None:
    """Accepted or refused messages: (account, status before, result). Any request IDs
    the provider gave are kept, refused ones too, so that reports it sends for them
    later match and change nothing rather than wait as unmatched."""
    if not answered:
        return
    # Taken after the messages' row locks, the reverse of apply_report; that cannot
    # deadlock, as a report meets these messages' parts only once this transaction
    # has committed them. All in one order, whichever transaction takes them.
    keys = sorted({(account, key) for account, _, r in answered for key in r.keys})
    await tx.lock_all([key_lock(account, key) for account, key in keys])
    submitted_at = time.time()
    await tx.executemany(
        "UPDATE messages SET request_id = ?, submitted_at = COALESCE(submitted_at, ?) WHERE id = ?",
        [
            (
                ",".join(r.request_ids),
                submitted_at if r.decision is Decision.ACCEPTED else None,
                r.message_id,
            )
            for _, _, r in answered
        ],
    )
    await tx.executemany(
        "INSERT INTO message_parts (message_id, part, account, request_id, rid_key, "
        "rcpt_key, status) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (r.message_id, part, account, rid, key[0], key[1], _reached(r).value)
            for account, _, r in answered
            for part, (rid, key) in enumerate(zip(r.request_ids, r.keys, strict=True))
        ],
    )
    await tx.executemany(
        "INSERT INTO polls (message_id, due_at, tries, since) VALUES (?, ?, 0, ?)",
        [(r.message_id, r.poll_at, r.poll_at) for _, _, r in answered if r.poll_at is not None],
    )
    for account, old, result in answered:
        new = reconcile.advance(old, _reached(result))
        if new is not old:
            await set_status(
                tx,
                result.message_id,
                account,
                old,
                new,
                request_id=",".join(result.request_ids),
                error_code=result.error_code,
                error_text=result.error_text,
                http_status=result.http_status,
            )
    for account, parked in (await _parked_keys(tx, keys)).items():
        await apply_parked(tx, account, parked)


def _reached(result: AttemptResult) -> Status:
    return result.status if result.decision is Decision.ACCEPTED else Status.FAILED


async def _parked_keys(
    tx: Tx, keys: Sequence[tuple[str, tuple[str, str]]]
) -> dict[str, list[tuple[str, str]]]:
    """Of (account, key) pairs, those for which reports wait unmatched, by account:
    most send responses come before their reports, so one read spares a read per key."""
    wanted = set(keys)
    found: dict[str, list[tuple[str, str]]] = {}
    for account in sorted({account for account, _ in keys}):
        rid_keys = sorted({key[0] for a, key in keys if a == account})
        for chunk in _chunks(rid_keys):
            among, params = tx.among("rid_key", chunk)
            rows = await tx.fetchall(
                "SELECT DISTINCT rid_key, rcpt_key FROM reports WHERE account = ? "
                f"AND message_id IS NULL AND {among} ORDER BY rid_key, rcpt_key",
                (account, *params),
            )
            found.setdefault(account, []).extend(
                (row[0], row[1]) for row in rows if (account, (row[0], row[1])) in wanted
            )
    return {account: parked for account, parked in found.items() if parked}


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
