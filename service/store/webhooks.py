"""Outbound event webhooks: subscriptions, the deliveries fanned out to them, attempts.

Every webhook keeps a cursor into the events table; fanning out turns the events past
the lowest cursor into delivery rows, which senders claim under a lease.
"""

from __future__ import annotations

import json

from service.clock import iso_now
from service.model import NewWebhook, Webhook, WebhookAttempt, WebhookDelivery, WebhookOutcome
from service.store import rows
from service.store.rows import WEBHOOK_COLUMNS
from service.store.tx import Read, Tx


async def create(tx: Tx, webhook: NewWebhook) -> Webhook:
    created = await tx.event("webhook.created", webhook_id=webhook.id, events=list(webhook.events))
    # The cursor is that event: the webhook's first delivery is the first event
    # after the one that says it exists.
    row = await tx.fetchone(
        "INSERT INTO webhooks (id, url, secret, events, description, cursor, created_at) "
        f"VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING {WEBHOOK_COLUMNS}",
        (
            webhook.id,
            webhook.url,
            webhook.secret,
            json.dumps(list(webhook.events)),
            webhook.description,
            created.id,
            iso_now(),
        ),
    )
    assert row is not None
    return rows.webhook(row)


async def select(read: Read, where: str, params: tuple[str, ...]) -> list[Webhook]:
    """Webhooks with how many deliveries each has pending."""
    found = await read(
        f"SELECT {WEBHOOK_COLUMNS}, (SELECT COUNT(*) FROM webhook_deliveries d "
        f"WHERE d.webhook_id = w.id) FROM webhooks w {where} ORDER BY w.created_at, w.id",
        params,
    )
    return [rows.webhook(row, row[-1]) for row in found]


async def delete(tx: Tx, webhook_id: str) -> bool:
    if not await tx.execute("DELETE FROM webhooks WHERE id = ?", (webhook_id,)):
        return False
    await tx.execute("DELETE FROM webhook_deliveries WHERE webhook_id = ?", (webhook_id,))
    await tx.event("webhook.deleted", webhook_id=webhook_id)
    return True


async def any_behind(read: Read) -> bool:
    """Most passes find nothing new: a read settles that without a write transaction."""
    [(behind, newest)] = await read(
        "SELECT (SELECT MIN(cursor) FROM webhooks WHERE active = 1), (SELECT MAX(id) FROM events)",
        (),
    )
    return not (behind is None or newest is None or newest <= behind)


async def fan_out(tx: Tx, now: float, limit: int, visible_events: str) -> int:
    """`visible_events` is the store's VISIBLE_EVENTS, so a cursor never passes an
    event that could still commit behind it."""
    # Locked, so that processes fanning out at once take turns instead of
    # queueing the same deliveries twice.
    hooks = [
        rows.webhook(row)
        for row in await tx.fetchall(
            f"SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE active = 1 ORDER BY id{tx.FOR_UPDATE}"
        )
    ]
    if not hooks:
        return 0
    events = await tx.fetchall(
        f"SELECT id, event FROM events WHERE id > ?{visible_events} ORDER BY id LIMIT ?",
        (min(h.cursor for h in hooks), limit),
    )
    if not events:
        return 0
    await tx.executemany(
        "INSERT INTO webhook_deliveries (webhook_id, event_id, due_at, first_at) "
        "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
        [
            (hook.id, event_id, now, now)
            for hook in hooks
            for event_id, name in events
            if event_id > hook.cursor and hook.wants(name)
        ],
    )
    last = events[-1][0]
    await tx.executemany(
        "UPDATE webhooks SET cursor = ? WHERE id = ? AND cursor < ?",
        [(last, hook.id, last) for hook in hooks],
    )
    return len(events)


async def any_delivery_due(read: Read, now: float) -> bool:
    due = await read(
        "SELECT 1 FROM webhook_deliveries WHERE due_at <= ? "
        "AND (claimed_until IS NULL OR claimed_until < ?) LIMIT 1",
        (now, now),
    )
    return bool(due)


async def claim_deliveries(tx: Tx, now: float, lease: float, limit: int) -> list[WebhookDelivery]:
    # The rows stay locked from this read to the claim below (on SQLite, the
    # write lock does it), so no other process claims the same deliveries.
    found = await tx.fetchall(
        "SELECT d.webhook_id, w.url, w.secret, d.attempts, d.first_at, "
        "e.id, e.ts, e.event, e.message_id, e.account, e.data "
        "FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id "
        "JOIN events e ON e.id = d.event_id "
        "WHERE w.active = 1 AND d.due_at <= ? "
        "AND (d.claimed_until IS NULL OR d.claimed_until < ?) "
        f"ORDER BY d.due_at, d.event_id LIMIT ?{tx.skip_locked('d')}",
        (now, now, limit),
    )
    await tx.executemany(
        "UPDATE webhook_deliveries SET claimed_until = ?, attempts = attempts + 1 "
        "WHERE webhook_id = ? AND event_id = ?",
        [(now + lease, row[0], row[5]) for row in found],
    )
    return [
        WebhookDelivery(row[0], row[1], row[2], rows.event(row[5:]), row[3] + 1, row[4])
        for row in found
    ]


async def record_attempt(tx: Tx, attempt: WebhookAttempt) -> None:
    key = (attempt.webhook_id, attempt.event_id)
    if attempt.outcome is WebhookOutcome.RETRY:
        changed = await tx.execute(
            "UPDATE webhook_deliveries SET due_at = ?, claimed_until = NULL "
            "WHERE webhook_id = ? AND event_id = ?",
            (attempt.retry_at, *key),
        )
    elif attempt.outcome is WebhookOutcome.GONE:
        await tx.execute("UPDATE webhooks SET active = 0 WHERE id = ?", (attempt.webhook_id,))
        changed = await tx.execute(
            "DELETE FROM webhook_deliveries WHERE webhook_id = ?", (attempt.webhook_id,)
        )
    else:
        changed = await tx.execute(
            "DELETE FROM webhook_deliveries WHERE webhook_id = ? AND event_id = ?", key
        )
    if not changed:
        return  # deleted or disabled while this attempt was out: nothing to tell
    delivered = attempt.outcome is WebhookOutcome.DELIVERED
    await tx.execute(
        "UPDATE webhooks SET last_status = ?, last_error = ?, last_attempt_at = ?, "
        "delivered = delivered + ?, failures = CASE WHEN ? THEN 0 ELSE failures + 1 END "
        "WHERE id = ?",
        (
            attempt.http_status,
            attempt.error,
            iso_now(),
            int(delivered),
            delivered,
            attempt.webhook_id,
        ),
    )
