"""Committed state changes, rendered once for every reader: logs, /v1/events, webhooks.

The store hands every event it committed to the `EventBus`; nothing else reports
state changes, so each change is exactly one log line, one stored row and one
webhook delivery. `event_fields` gives all three readers the same keys: phone
numbers are masked unless SMSGW_LOG_PII=1, and events never carry credentials.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Sequence
from typing import Any

import structlog

from service.model import Event
from service.store.protocol import EventSink

_PHONE_KEYS = frozenset({"to", "sender", "recipient", "from", "number"})


def mask_phone(number: str) -> str:
    """Keeps the country prefix and last digits: enough to correlate, not to dial."""
    if len(number) <= 6:
        return "*" * len(number)
    return number[:3] + "*" * (len(number) - 6) + number[-3:]


def log_pii_from_env() -> bool:
    return os.environ.get("SMSGW_LOG_PII") == "1"


class EventFormat:
    """The stable keys of one event, as logs, the events API and webhooks show it."""

    def __init__(self, provider_of: Callable[[str], str], log_pii: bool | None = None) -> None:
        self._provider_of = provider_of
        self._log_pii = log_pii_from_env() if log_pii is None else log_pii

    def fields(self, event: Event) -> dict[str, Any]:
        fields: dict[str, Any] = {"event_id": event.id}
        if event.message_id:
            fields["message_id"] = event.message_id
        if event.account:
            fields["account"] = event.account
            fields["provider"] = self._provider_of(event.account)
        for key, value in event.data.items():
            if key in _PHONE_KEYS and isinstance(value, str) and not self._log_pii:
                value = mask_phone(value)
            fields[key] = value
        return fields

    def line(self, event: Event) -> dict[str, Any]:
        """The whole record as a log line has it: `event`, `level` and `ts` included."""
        return {"event": event.event, "level": "info", "ts": event.ts, **self.fields(event)}


class EventLogger:
    def __init__(self, event_format: EventFormat) -> None:
        self._format = event_format
        self._log = structlog.get_logger("smsgw.events")

    def __call__(self, events: Sequence[Event]) -> None:
        for event in events:
            self._log.info(event.event, **self._format.fields(event))


class EventBus:
    """Fans committed events out to every sink, and wakes whoever waits for news."""

    def __init__(self, *sinks: EventSink) -> None:
        self._sinks = list(sinks)
        self._news = asyncio.Event()

    def subscribe(self, sink: EventSink) -> None:
        self._sinks.append(sink)

    def __call__(self, events: Sequence[Event]) -> None:
        for sink in self._sinks:
            sink(events)
        # Waiters hold the previous Event: setting it wakes exactly them.
        self._news.set()
        self._news = asyncio.Event()

    async def wait(self, seconds: float) -> None:
        """Returns when this process commits events, or after `seconds`: events that
        other processes commit are found by reading the store again."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._news.wait(), seconds)
