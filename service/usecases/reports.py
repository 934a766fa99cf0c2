"""Stored delivery-report callbacks: which to show or replay, and how they look.

Shared by `/v1/reports` and the console's Unmatched reports page.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from service.clock import iso_of
from service.errors import ValidationFailed
from service.model import InboxFilter, InboxRecord, InboxState
from service.parsing import int_of
from service.runtime import Runtime

REPLAY_LIMIT = 5000
"""Callbacks one replay request applies at most; the answer's cursor goes on."""


def moment(value: str, field: str) -> float:
    """An ISO-8601 time with its offset, as epoch seconds."""
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise ValidationFailed(
            f"{field} must be an ISO-8601 time with its offset, e.g. 2026-12-07T10:00:00Z",
            field=field,
        )
    return parsed.timestamp()


def inbox_filter(values: Mapping[str, Any]) -> InboxFilter:
    """The filter of a query string or a replay body: account, state, since, until."""
    state = values.get("state") or None
    if state is not None and state not in {s.value for s in InboxState}:
        choices = ", ".join(s.value for s in InboxState)
        raise ValidationFailed(f"state must be one of {choices}", field="state")
    for name in ("account", "since", "until"):
        if not isinstance(values.get(name, ""), str):
            raise ValidationFailed(f"{name} must be a string", field=name)
    since, until = values.get("since") or None, values.get("until") or None
    return InboxFilter(
        account=values.get("account") or "",
        state=InboxState(state) if state else None,
        since=moment(since, "since") if since else None,
        until=moment(until, "until") if until else None,
    )


def cursor(raw: str | None) -> int:
    after = int_of((raw or "0").strip(), low=0)
    if after is None:
        raise ValidationFailed("after must be a cursor this API gave", field="after")
    return after


def unmatched_before(rt: Runtime) -> float:
    return time.time() - rt.settings.unmatched_ttl


def inbox_view(record: InboxRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "account": record.account,
        "state": record.state.value,
        "received_at": iso_of(record.received_at),
        "applied_at": iso_of(record.applied_at) if record.applied_at is not None else None,
        "reports": [
            {
                "request_id": r.report.request_id,
                "recipient": r.report.recipient,
                "status": r.report.status.value,
                "error_code": r.report.error_code,
                "error_text": r.report.error_text,
                "outcome": r.outcome,
                "message_id": r.message_id or None,
            }
            for r in record.reports
        ],
        "callback": {
            "method": record.callback.method,
            "content_type": record.callback.content_type,
            "query": record.callback.query,
            "headers": dict(record.callback.headers),
            "body": record.callback.body,
        },
    }


async def replay(rt: Runtime, filters: InboxFilter, after: int) -> tuple[int, int | None]:
    """Apply again the stored callbacks `filters` selects after `after` (at most
    REPLAY_LIMIT); how many, and the cursor to go on from when more may follow."""
    ids = await rt.store.inbox_ids(filters, after, REPLAY_LIMIT, unmatched_before(rt))
    replayed = 0
    for start in range(0, len(ids), rt.settings.inbox_batch):
        replayed += await rt.store.replay_inbox(ids[start : start + rt.settings.inbox_batch])
    return replayed, (ids[-1] if len(ids) == REPLAY_LIMIT else None)
