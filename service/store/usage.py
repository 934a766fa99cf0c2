"""A client's usage per day and month, and its shared rate-limit bucket.

Both are checked and counted inside the transaction that queues the messages, so a
refused send leaves nothing behind, and both hold across processes. On PostgreSQL
the quota check is the upsert itself (`used + n <= limit`), which waits for any other
transaction holding the row and then tests the row as that one left it: two
processes can never both pass the edge. The bucket's row is read FOR UPDATE for the
same reason. SQLite's single writer serializes them anyway.

Locking order within a send: the bucket row, then the day row, then the month row,
all before the messages are inserted; a cancel takes the message row first and a
usage row after, and holds no bucket, so no two of them can wait on each other.
"""

from __future__ import annotations

from collections.abc import Sequence

from service.quotas import (
    PERIODS,
    Charge,
    Period,
    Usage,
    period_start,
    quota_exceeded,
    rate_limited,
)
from service.ratelimit import capacity, refilled, wait_for
from service.store.tx import IN_CHUNK, Read, Tx, placeholders


async def charge(tx: Tx, charge: Charge, count: int) -> None:
    """Count `count` messages against the client at `charge.at`, or raise RateLimited or
    QuotaExceeded (the caller's transaction then rolls back whatever it wrote)."""
    limits = await tx.fetchone(
        "SELECT rate_per_second, quota_day, quota_month FROM clients WHERE name = ?",
        (charge.client,),
    )
    if limits is None or count == 0:
        return
    rate, day, month = limits
    if rate is not None:
        await _take_tokens(tx, charge, float(rate), count)
    for period, limit in zip(PERIODS, (day, month), strict=True):
        await _count(tx, charge, period, limit, count)


async def _take_tokens(tx: Tx, charge: Charge, rate: float, count: int) -> None:
    found = await _bucket(tx, charge.client)
    if found is None:
        # A client's first limited send finds its bucket full.
        await tx.execute(
            "INSERT INTO client_rates (client, tokens, stamp) VALUES (?, ?, ?) "
            "ON CONFLICT DO NOTHING",
            (charge.client, capacity(rate), charge.at),
        )
        found = await _bucket(tx, charge.client)
    assert found is not None
    tokens = refilled(found[0], charge.at - found[1], rate)
    wait = wait_for(tokens, count, rate)
    if wait > 0:
        raise rate_limited(rate, wait)
    await tx.execute(
        "UPDATE client_rates SET tokens = ?, stamp = ? WHERE client = ?",
        (tokens - count, max(found[1], charge.at), charge.client),
    )


async def _bucket(tx: Tx, client: str) -> tuple[float, float] | None:
    found = await tx.fetchone(
        f"SELECT tokens, stamp FROM client_rates WHERE client = ?{tx.FOR_UPDATE}", (client,)
    )
    return None if found is None else (float(found[0]), float(found[1]))


async def _count(tx: Tx, charge: Charge, period: Period, limit: int | None, count: int) -> None:
    """One upsert: the row is created or added to, and with a `limit` only while the sum
    stays within it. A count above the limit itself could pass as a new row's first
    value, so it is refused before."""
    key = (charge.client, period.value, period_start(period, charge.at))
    upsert = (
        "INSERT INTO client_usage (client, period, starts, used) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (client, period, starts) "
        "DO UPDATE SET used = client_usage.used + excluded.used"
    )
    if limit is None:
        # Counted all the same: a quota set later today knows what today has used.
        await tx.execute(upsert, (*key, count))
        return
    if count > limit or not await tx.execute(
        f"{upsert} WHERE client_usage.used + excluded.used <= ?", (*key, count, limit)
    ):
        found = await tx.fetchone(
            "SELECT used FROM client_usage WHERE client = ? AND period = ? AND starts = ?", key
        )
        raise quota_exceeded(period, limit, found[0] if found else 0, count, charge.at)


async def give_back(tx: Tx, client: str, charged_at: float) -> None:
    """One message's count, returned to the periods it was counted in."""
    await tx.executemany(
        "UPDATE client_usage SET used = used - 1 "
        "WHERE client = ? AND period = ? AND starts = ? AND used > 0",
        [(client, p.value, period_start(p, charged_at)) for p in PERIODS],
    )


async def current(read: Read, clients: Sequence[str], at: float) -> dict[str, Usage]:
    """The usage of each of `clients` in the day and month holding `at`; a client that
    sent nothing in them is left out."""
    days, months = (period_start(p, at) for p in PERIODS)
    used: dict[str, dict[str, int]] = {}
    for start in range(0, len(clients), IN_CHUNK):
        chunk = clients[start : start + IN_CHUNK]
        rows = await read(
            "SELECT client, period, used FROM client_usage "
            f"WHERE client IN ({placeholders(len(chunk))}) "
            "AND ((period = 'day' AND starts = ?) OR (period = 'month' AND starts = ?))",
            (*chunk, days, months),
        )
        for client, period, count in rows:
            used.setdefault(client, {})[period] = int(count)
    return {client: Usage(**periods) for client, periods in used.items()}
