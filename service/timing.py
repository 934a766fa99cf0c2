"""When a message may go: `send_at`, `valid_for` and `expires_at` of a send request.

Pure rules, no I/O: the caller passes the moment to judge by. A refusal is a 400 (the request
itself is wrong, whatever the accounts) naming the field at fault.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from service.errors import BadRequest
from service.parsing import instant_of

PAST_TOLERANCE = 60.0
"""A `send_at` this far in the past is taken as "now": the client's clock and ours
disagree by about that much, and the request itself takes time to arrive."""
MAX_AHEAD = 35 * 86400.0
"""How far ahead a message may be scheduled (Twilio's `SendAt` allows the same), and
how long after it goes a message may stay valid."""


@dataclass(frozen=True, slots=True)
class Timing:
    send_at: float | None = None
    """Epoch seconds; None: send now."""
    expires_at: float | None = None
    """Epoch seconds; None: valid until sent."""


def timing(body: dict[str, Any], now: float) -> Timing:
    """The schedule and validity a send request asks for. `valid_for` counts from
    the moment the message is due (its `send_at`, else now)."""
    send_at = _instant(body, "send_at")
    if send_at is not None:
        if send_at < now - PAST_TOLERANCE:
            raise BadRequest("send_at is in the past", field="send_at")
        if send_at > now + MAX_AHEAD:
            raise BadRequest("send_at is more than 35 days ahead", field="send_at")
        if send_at <= now:
            send_at = None
    due = now if send_at is None else send_at
    valid_for = body.get("valid_for")
    if valid_for is not None and body.get("expires_at") is not None:
        raise BadRequest("give either valid_for or expires_at", field="expires_at")
    expires_at = _instant(body, "expires_at")
    if valid_for is not None:
        if not isinstance(valid_for, int) or isinstance(valid_for, bool) or valid_for < 1:
            raise BadRequest(
                "valid_for must be a whole number of seconds, at least 1", field="valid_for"
            )
        if valid_for > MAX_AHEAD:
            raise BadRequest(
                f"valid_for may be at most {int(MAX_AHEAD)} seconds (35 days)", field="valid_for"
            )
        expires_at = due + valid_for
    elif expires_at is not None:
        if expires_at <= due:
            what = "send_at" if send_at is not None else "now"
            raise BadRequest(f"expires_at must be after {what}", field="expires_at")
        if expires_at > due + MAX_AHEAD:
            raise BadRequest(
                "expires_at may be at most 35 days after the message is due", field="expires_at"
            )
    return Timing(send_at, expires_at)


def _instant(body: dict[str, Any], field: str) -> float | None:
    value = body.get(field)
    if value is None:
        return None
    moment = instant_of(value) if isinstance(value, str) else None
    if moment is None:
        raise BadRequest(
            f"{field} must be an ISO-8601 date and time with its UTC offset, "
            "like 2030-01-31T09:00:00+01:00",
            field=field,
        )
    return moment
