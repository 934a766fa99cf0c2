"""Inbound messages, the auto-reply rules that answer them, and the opt-out list.

`receive_inbound` stores a message, gathers what the rules need to know, lets the
caller's planner decide, and carries the decision out, all in one transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from service import reconcile
from service.clock import iso_now
from service.model import (
    AttemptResult,
    AutoReplyRule,
    Decision,
    InboundDecision,
    InboundFacts,
    InboundRecord,
    InboundResult,
    InboundSms,
    Status,
    Suppression,
)
from service.store import rows
from service.store.lifecycle import conclude, insert_messages
from service.store.protocol import InboundPlanner
from service.store.reports import set_status
from service.store.rows import M_COLUMNS, RULE_COLUMNS
from service.store.tx import IN_CHUNK, Read, Tx, key_lock, placeholders


async def receive_inbound(
    tx: Tx, account: str, inbound: InboundSms, replies_since: str, plan: InboundPlanner
) -> InboundResult:
    # One sender's messages are planned one at a time, so that two arriving at
    # once cannot both see room under the reply limit.
    await tx.lock(f"sender:{inbound.sender}")
    inbound_id = await tx.insert(
        "INSERT INTO inbound (account, provider_id, sender, recipient, text, "
        "received_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (
            account,
            inbound.provider_id,
            inbound.sender,
            inbound.recipient,
            inbound.text,
            iso_now(),
        ),
    )
    seen = {
        "provider_id": inbound.provider_id,
        "sender": inbound.sender,
        "recipient": inbound.recipient,
    }
    if not inbound_id:
        await tx.event("inbound.duplicate", "", account, **seen)
        return InboundResult(0, InboundDecision(note="duplicate"))
    decision = plan(await _inbound_facts(tx, inbound, replies_since))
    await tx.event(
        "inbound.received",
        "",
        account,
        inbound_id=inbound_id,
        **seen,
        rule=decision.rule,
        reply_message_id=decision.reply.id if decision.reply else "",
        reply_note=decision.note,
    )
    await _carry_out(tx, account, inbound, inbound_id, decision)
    return InboundResult(inbound_id, decision)


async def _inbound_facts(tx: Tx, inbound: InboundSms, since: str) -> InboundFacts:
    async def one(sql: str, *params: Any) -> Any:
        row = await tx.fetchone(sql, params)
        return row[0] if row else None

    rules = [
        rows.rule(row)
        for row in await tx.fetchall(
            f"SELECT {RULE_COLUMNS} FROM autoreplies WHERE active = 1 ORDER BY position, name"
        )
    ]
    senders = [
        n for row in await tx.fetchall("SELECT sender, fallback_sender FROM accounts") for n in row
    ]
    return InboundFacts(
        rules=rules,
        suppressed=await one("SELECT 1 FROM suppressions WHERE number = ?", inbound.sender)
        is not None,
        own_numbers=frozenset(filter(None, map(reconcile.recipient_key, senders))),
        recent_replies=await one(
            "SELECT COUNT(*) FROM messages WHERE recipient = ? AND inbound_id IS NOT NULL "
            "AND created_at >= ?",
            inbound.sender,
            since,
        ),
        echoes_auto_reply=await one(
            "SELECT 1 FROM messages WHERE inbound_id IS NOT NULL AND created_at >= ? "
            "AND text = ? LIMIT 1",
            since,
            inbound.text,
        )
        is not None,
    )


async def _carry_out(
    tx: Tx,
    account: str,
    inbound: InboundSms,
    inbound_id: int,
    decision: InboundDecision,
) -> None:
    if decision.suppress is True:
        await suppress(tx, inbound.sender, inbound.text.strip().upper()[:32], account)
    elif decision.suppress is False:
        await unsuppress(tx, inbound.sender)
    reply = decision.reply
    if reply is not None:
        await insert_messages(tx, [replace(reply, inbound_id=inbound_id)])
        if decision.inline:
            # Handed to the provider in the callback's answer: in flight, not queued.
            await tx.execute("DELETE FROM outbox WHERE message_id = ?", (reply.id,))
            await tx.execute("UPDATE messages SET attempts = 1 WHERE id = ?", (reply.id,))
            await set_status(tx, reply.id, account, Status.QUEUED, Status.SENDING)
    await tx.execute(
        "UPDATE inbound SET rule = ?, reply_message_id = ?, reply_note = ? WHERE id = ?",
        (decision.rule, reply.id if reply else "", decision.note, inbound_id),
    )


async def list_inbound(read: Read, limit: int, before_id: int | None) -> list[InboundRecord]:
    clause = "WHERE i.id < ?" if before_id is not None else ""
    params = (before_id, limit) if before_id is not None else (limit,)
    found = await read(
        "SELECT i.id, i.account, i.sender, i.recipient, i.text, i.provider_id, "
        f"i.received_at, i.rule, i.reply_note, {M_COLUMNS} FROM inbound i "
        "LEFT JOIN messages m ON m.id = i.reply_message_id AND i.reply_message_id != '' "
        f"{clause} ORDER BY i.id DESC LIMIT ?",
        params,
    )
    return [
        InboundRecord(
            row[0],
            row[1],
            row[2],
            row[3],
            row[4],
            row[5],
            row[6],
            rule=row[7],
            reply_note=row[8],
            reply=rows.message(row[9:]) if row[9] is not None else None,
        )
        for row in found
    ]


async def adopt_request_id(
    tx: Tx, account: str, message_id: str, request_id: str, key: tuple[str, str]
) -> bool:
    await tx.lock(key_lock(account, key))
    found = await tx.fetchone(
        "SELECT 1 FROM messages WHERE id = ? AND account = ? AND status = 'sending' "
        f"AND request_id = '' AND inbound_id IS NOT NULL{tx.FOR_UPDATE}",
        (message_id, account),
    )
    if found is None:
        return False
    await conclude(
        tx,
        AttemptResult(message_id, Decision.ACCEPTED, request_ids=(request_id,), keys=(key,)),
    )
    return True


# -- auto-reply rules ------------------------------------------------------------------


async def list_rules(read: Read) -> list[AutoReplyRule]:
    found = await read(f"SELECT {RULE_COLUMNS} FROM autoreplies ORDER BY position, name", ())
    return [rows.rule(row) for row in found]


async def put_rule(tx: Tx, rule: AutoReplyRule) -> bool:
    now = iso_now()
    row = await tx.fetchone(
        f"INSERT INTO autoreplies ({RULE_COLUMNS}, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET "
        "position = excluded.position, kind = excluded.kind, "
        "pattern = excluded.pattern, reply = excluded.reply, "
        "account = excluded.account, number = excluded.number, "
        "active = excluded.active, updated_at = excluded.updated_at "
        "RETURNING created_at = updated_at",
        (
            rule.name,
            rule.position,
            rule.kind,
            rule.pattern,
            rule.reply,
            rule.account,
            rule.number,
            int(rule.active),
            now,
            now,
        ),
    )
    created = bool(row and row[0])
    await tx.event("autoreply.created" if created else "autoreply.updated", rule=rule.name)
    return created


async def delete_rule(tx: Tx, name: str) -> bool:
    deleted = await tx.execute("DELETE FROM autoreplies WHERE name = ?", (name,))
    if deleted:
        await tx.event("autoreply.deleted", rule=name)
    return deleted > 0


# -- the suppression list ----------------------------------------------------------------


async def suppressed(read: Read, numbers: Sequence[str]) -> set[str]:
    found: set[str] = set()
    unique = sorted(set(numbers))
    for start in range(0, len(unique), IN_CHUNK):
        chunk = unique[start : start + IN_CHUNK]
        hits = await read(
            f"SELECT number FROM suppressions WHERE number IN ({placeholders(len(chunk))})",
            chunk,
        )
        found.update(row[0] for row in hits)
    return found


async def suppress(tx: Tx, number: str, keyword: str, account: str) -> bool:
    added = await tx.execute(
        "INSERT INTO suppressions (number, keyword, account, created_at) "
        "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (number, keyword, account, iso_now()),
    )
    if added:
        await tx.event("suppression.added", "", account, number=number, keyword=keyword)
    return added > 0


async def unsuppress(tx: Tx, number: str) -> bool:
    row = await tx.fetchone(
        "DELETE FROM suppressions WHERE number = ? RETURNING account", (number,)
    )
    if row is not None:
        await tx.event("suppression.removed", "", row[0], number=number)
    return row is not None


async def list_suppressions(read: Read) -> list[Suppression]:
    found = await read(
        "SELECT number, keyword, account, created_at FROM suppressions "
        "ORDER BY created_at DESC, number",
        (),
    )
    return [Suppression(*row) for row in found]
