"""Committed state changes become log lines for log pipelines.

The store hands every event it committed to `EventLogger`; nothing else logs state
changes, so each change is exactly one line. Phone numbers are masked unless
SMSGW_LOG_PII=1, and events never carry credentials.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import structlog

from service.store.protocol import Event

_PHONE_KEYS = frozenset({"to", "sender", "recipient", "from"})


def mask_phone(number: str) -> str:
    """Keeps the country prefix and last digits: enough to correlate, not to dial."""
    if len(number) <= 6:
        return "*" * len(number)
    return number[:3] + "*" * (len(number) - 6) + number[-3:]


class EventLogger:
    def __init__(self, provider_of: Callable[[str], str], log_pii: bool | None = None) -> None:
        self._provider_of = provider_of
        self._log_pii = os.environ.get("SMSGW_LOG_PII") == "1" if log_pii is None else log_pii
        self._log = structlog.get_logger("smsgw.events")

    def __call__(self, events: Sequence[Event]) -> None:
        for event in events:
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
            self._log.info(event.event, **fields)
