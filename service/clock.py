"""Timestamps in one format: ISO-8601 UTC with milliseconds, so they sort as text."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def iso_now() -> str:
    return iso(datetime.now(UTC))


def iso_ago(seconds: float) -> str:
    return iso(datetime.now(UTC) - timedelta(seconds=seconds))


def iso_of(epoch: float) -> str:
    return iso(datetime.fromtimestamp(epoch, UTC))
