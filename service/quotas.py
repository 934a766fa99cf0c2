"""A client's quotas and rate limit: the periods its usage is counted in, when they
reset, and what a refused send is told. Plain values and arithmetic, no I/O; the
store counts and refuses inside the transaction that queues the messages.

Usage counts messages (one per recipient) as they are accepted into the outbox, in
the UTC day and month of that moment; a message to an opted-out number is never
queued and is not counted, and a cancelled one is given back to the periods it was
counted in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from service.clock import iso_of
from service.errors import QuotaExceeded, RateLimited


class Period(StrEnum):
    DAY = "day"
    MONTH = "month"


PERIODS = (Period.DAY, Period.MONTH)


@dataclass(frozen=True, slots=True)
class Charge:
    """Whom a send is counted against, and when (seconds since the epoch)."""

    client: str
    at: float


@dataclass(frozen=True, slots=True)
class Usage:
    """Messages counted in a client's current day and month."""

    day: int = 0
    month: int = 0


def period_start(period: Period, at: float) -> str:
    """The period holding `at`, as the text its usage row is keyed by: `2026-12-08`
    for a day, `2026-12` for a month (UTC)."""
    moment = datetime.fromtimestamp(at, UTC)
    return moment.strftime("%Y-%m-%d" if period is Period.DAY else "%Y-%m")


def resets_at(period: Period, at: float) -> float:
    """When the period holding `at` ends: the next UTC midnight, or the first of the
    next month at UTC midnight."""
    moment = datetime.fromtimestamp(at, UTC)
    start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if period is Period.DAY:
        return start.timestamp() + 86_400
    if start.month == 12:
        return start.replace(year=start.year + 1, month=1, day=1).timestamp()
    return start.replace(month=start.month + 1, day=1).timestamp()


def usage_view(usage: Usage, at: float) -> dict[str, Any]:
    return {
        "day": usage.day,
        "month": usage.month,
        "resets_at": {p.value: iso_of(resets_at(p, at)) for p in PERIODS},
    }


def _retry_after(seconds: float) -> int:
    """Retry-After is whole seconds: rounded up, and never 0, which means "now"."""
    return max(1, math.ceil(seconds))


def quota_exceeded(period: Period, limit: int, used: int, asked: int, at: float) -> QuotaExceeded:
    reset = resets_at(period, at)
    return QuotaExceeded(
        f"the {period.value} quota of {limit} messages would be exceeded: {used} used, "
        f"this send needs {asked}; nothing was queued. The quota resets at {iso_of(reset)}",
        field=f"quota.{period.value}",
        retry_after=_retry_after(reset - at),
    )


def rate_limited(rate: float, wait: float) -> RateLimited:
    return RateLimited(
        f"sending faster than this client's rate of {rate:g} messages a second; nothing "
        f"was queued. Retry in {wait:.2f} s",
        field="rate_per_second",
        retry_after=_retry_after(wait),
    )
