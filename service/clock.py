"""Timestamps in one format: ISO-8601 UTC with milliseconds, so they sort as text."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

Clock = Callable[[], float]
"""Seconds since the epoch: `time.time`, unless a test moves time itself (quota periods
and a client's rate limit read it, so that a test can cross midnight at will)."""


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def iso_now() -> str:
    return iso(datetime.now(UTC))


def iso_ago(seconds: float) -> str:
    return iso(datetime.now(UTC) - timedelta(seconds=seconds))


def iso_of(epoch: float) -> str:
    return iso(datetime.fromtimestamp(epoch, UTC))
