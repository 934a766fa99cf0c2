"""Console sessions: the ones signed in and not yet signed out.

A row is keyed by a hash of the session's nonce, so the table holds nothing a cookie
could be made from; the cookie's signature is checked before the row is looked up.
"""

from __future__ import annotations

from service.store.tx import Read, Tx


async def start(tx: Tx, session_id: str, token_id: str, expires_at: int, now: int) -> None:
    # Expired sessions are dropped as new ones start: the table stays as small as the
    # number of people signed in.
    await tx.execute("DELETE FROM console_sessions WHERE expires_at <= ?", (now,))
    await tx.execute(
        "INSERT INTO console_sessions (id, token_id, expires_at) VALUES (?, ?, ?)",
        (session_id, token_id, expires_at),
    )


async def is_live(read: Read, session_id: str, token_id: str, now: int) -> bool:
    found = await read(
        "SELECT 1 FROM console_sessions WHERE id = ? AND token_id = ? AND expires_at > ?",
        (session_id, token_id, now),
    )
    return bool(found)


async def end(tx: Tx, session_id: str) -> bool:
    return await tx.execute("DELETE FROM console_sessions WHERE id = ?", (session_id,)) > 0
