"""Polls: when a message whose provider pushes no reports is asked about next.

Each function runs inside the caller's transaction; what a poll's answer changes is
applied as any report is (`reports.apply_reports`).
"""

from __future__ import annotations

from service.model import PollDue
from service.store.tx import Read, Tx


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
            account = await tx.fetchone("SELECT account FROM messages WHERE id = ?", (message_id,))
            await tx.event("message.poll_gave_up", message_id, account[0] if account else "")
        return
    await tx.execute(
        "UPDATE polls SET due_at = ?, tries = tries + 1 WHERE message_id = ?",
        (due_at, message_id),
    )
