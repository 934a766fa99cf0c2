"""Infobip's status codes and how a status object reads, in a send answer, a delivery
report or a log entry.

Status mapping: by the status group, refined by the documented status ID (names
changed over the years, IDs did not). PENDING: PENDING_ACCEPTED is submitted,
PENDING_ENROUTE and PENDING_WAITING_DELIVERY en route. DELIVERED_TO_HANDSET is
delivered; DELIVERED_TO_OPERATOR is, by Infobip's own account, intermediate ("a
further DLR may follow"), so it is en route unless the account option says the
operator's word is final. UNDELIVERABLE is undelivered, except
UNDELIVERABLE_REJECTED_OPERATOR, which is the operator's rejection. EXPIRED is
expired, REJECTED rejected. At submission the REJECTED group is a refusal whose
kind depends on the ID (see `_STATUSES`): credit, route, coverage and demo-account
limits are account errors (another account may send it), REJECTED_SOURCE and
REJECTED_SENDER sender refusals, REJECTED_SYSTEM_ERROR transient, the rest refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import handlers.wire as wire
from service.model import Outcome, Report, Status


class _Known(NamedTuple):
    name: str
    group: int
    delivery: Status
    """What the status means in a delivery report or a log."""
    submission: Outcome | None
    """What it means in a send answer: None when the message was taken."""


PENDING, UNDELIVERABLE, DELIVERED, EXPIRED, REJECTED = 1, 2, 3, 4, 5

# Infobip's general (SMS) status codes, by ID. The IDs are stable; some names were
# changed (14 was REJECTED_DESTINATION, 52 REJECTED_INVALID_DESTINATION).
_STATUSES: dict[int, _Known] = {
    26: _Known("PENDING_ACCEPTED", PENDING, Status.SUBMITTED, None),
    7: _Known("PENDING_ENROUTE", PENDING, Status.ENROUTE, None),
    3: _Known("PENDING_WAITING_DELIVERY", PENDING, Status.ENROUTE, None),
    4: _Known("UNDELIVERABLE_REJECTED_OPERATOR", UNDELIVERABLE, Status.REJECTED, Outcome.REFUSED),
    9: _Known("UNDELIVERABLE_NOT_DELIVERED", UNDELIVERABLE, Status.UNDELIVERED, Outcome.REFUSED),
    31: _Known("UNDELIVERABLE_NOT_SENT", UNDELIVERABLE, Status.UNDELIVERED, Outcome.REFUSED),
    2: _Known("DELIVERED_TO_OPERATOR", DELIVERED, Status.ENROUTE, None),
    5: _Known("DELIVERED_TO_HANDSET", DELIVERED, Status.DELIVERED, None),
    15: _Known("EXPIRED_EXPIRED", EXPIRED, Status.EXPIRED, Outcome.REFUSED),
    29: _Known("EXPIRED_DLR_UNKNOWN", EXPIRED, Status.EXPIRED, Outcome.REFUSED),
    6: _Known("REJECTED_NETWORK", REJECTED, Status.REJECTED, Outcome.ACCOUNT_ERROR),
    8: _Known("REJECTED_PREFIX_MISSING", REJECTED, Status.REJECTED, Outcome.REFUSED),
    10: _Known("REJECTED_DND", REJECTED, Status.REJECTED, Outcome.REFUSED),
    11: _Known("REJECTED_SOURCE", REJECTED, Status.REJECTED, Outcome.SENDER_REJECTED),
    12: _Known("REJECTED_NOT_ENOUGH_CREDITS", REJECTED, Status.REJECTED, Outcome.ACCOUNT_ERROR),
    13: _Known("REJECTED_SENDER", REJECTED, Status.REJECTED, Outcome.SENDER_REJECTED),
    14: _Known("REJECTED_DESTINATION_BLOCKLISTED", REJECTED, Status.REJECTED, Outcome.REFUSED),
    17: _Known(
        "REJECTED_PREPAID_PACKAGE_EXPIRED", REJECTED, Status.REJECTED, Outcome.ACCOUNT_ERROR
    ),
    18: _Known(
        "REJECTED_DESTINATION_NOT_REGISTERED", REJECTED, Status.REJECTED, Outcome.ACCOUNT_ERROR
    ),
    19: _Known("REJECTED_ROUTE_NOT_AVAILABLE", REJECTED, Status.REJECTED, Outcome.ACCOUNT_ERROR),
    20: _Known("REJECTED_FLOODING_FILTER", REJECTED, Status.REJECTED, Outcome.REFUSED),
    21: _Known("REJECTED_SYSTEM_ERROR", REJECTED, Status.REJECTED, Outcome.TRANSIENT),
    23: _Known("REJECTED_DUPLICATE_MESSAGE_ID", REJECTED, Status.REJECTED, Outcome.REFUSED),
    24: _Known("REJECTED_INVALID_UDH", REJECTED, Status.REJECTED, Outcome.REFUSED),
    25: _Known("REJECTED_MESSAGE_TOO_LONG", REJECTED, Status.REJECTED, Outcome.REFUSED),
    51: _Known("MISSING_TO", REJECTED, Status.REJECTED, Outcome.REFUSED),
    52: _Known("REJECTED_DESTINATION", REJECTED, Status.REJECTED, Outcome.REFUSED),
    87: _Known("SIGNALS_BLOCKED", REJECTED, Status.REJECTED, Outcome.REFUSED),
    100: _Known("UNDELIVERABLE_REJECTED_PLATFORM", REJECTED, Status.REJECTED, Outcome.REFUSED),
}
DELIVERED_TO_OPERATOR = 2

# What a status group means when its ID is not one of the above.
_GROUPS: dict[int, tuple[Status, Outcome | None]] = {
    0: (Status.SUBMITTED, None),  # ACCEPTED / OK
    PENDING: (Status.ENROUTE, None),
    UNDELIVERABLE: (Status.UNDELIVERED, Outcome.REFUSED),
    DELIVERED: (Status.DELIVERED, None),
    EXPIRED: (Status.EXPIRED, Outcome.REFUSED),
    REJECTED: (Status.REJECTED, Outcome.REFUSED),
}
_GROUP_BY_NAME = {
    "ACCEPTED": 0,
    "OK": 0,
    "PENDING": PENDING,
    "UNDELIVERABLE": UNDELIVERABLE,
    "DELIVERED": DELIVERED,
    "EXPIRED": EXPIRED,
    "REJECTED": REJECTED,
}
# Names seen for the same IDs in older answers and in the SDKs' fixtures.
_ID_BY_NAME: dict[str, int] = {
    **{known.name: status_id for status_id, known in _STATUSES.items()},
    "MESSAGE_ACCEPTED": 26,
    "REJECTED_INVALID_DESTINATION": 52,
}


def number_of(answer: Mapping[str, Any]) -> str:
    # /sms/2 answers say "to"; the /sms/3 family says "destination".
    return wire.as_text(answer.get("to")) or wire.as_text(answer.get("destination"))


class Unreadable(ValueError):
    """A status, report or log entry Infobip would never send."""


class Resolved(NamedTuple):
    status_id: int | None
    code: str
    text: str
    delivery: Status
    submission: Outcome | None


def resolve(status: Mapping[str, Any], *, final_at_operator: bool) -> Resolved:
    raw_group, raw_id = status.get("groupId"), status.get("id")
    group = wire.as_int(raw_group)
    if group is None and not wire.is_blank(raw_group):
        raise Unreadable("status.groupId must be an integer")
    status_id = wire.as_int(raw_id)
    if status_id is None and not wire.is_blank(raw_id):
        raise Unreadable("status.id must be an integer")
    name = wire.as_text(status.get("name")).upper()
    if group is None:
        group = _GROUP_BY_NAME.get(wire.as_text(status.get("groupName")).upper())
    if status_id is None:
        status_id = _ID_BY_NAME.get(name)
    known = _STATUSES.get(status_id) if status_id is not None else None
    if group is None and known is not None:
        group = known.group
    if group is None:
        raise Unreadable("the status names no Infobip status group")
    if group not in _GROUPS:
        raise Unreadable(f"{group} is not an Infobip status group")
    if known is not None and known.group == group:
        delivery, submission = known.delivery, known.submission
    else:
        delivery, submission = _GROUPS[group]
    if status_id == DELIVERED_TO_OPERATOR and group == DELIVERED and final_at_operator:
        delivery = Status.DELIVERED
    code = (
        name or (known.name if known else "") or (str(status_id) if status_id is not None else "")
    )
    text = wire.as_text(status.get("description")) or name or wire.as_text(status.get("groupName"))
    return Resolved(status_id, code or f"group {group}", text, delivery, submission)


def report_of(entry: Any, final_at_operator: bool) -> Report:
    if not isinstance(entry, dict):
        raise Unreadable("a report must be a JSON object")
    message_id = wire.as_text(entry.get("messageId"))
    if not message_id:
        raise Unreadable("a report needs a messageId")
    status = entry.get("status")
    if not isinstance(status, dict):
        raise Unreadable("a report needs a status object")
    resolved = resolve(status, final_at_operator=final_at_operator)
    error = entry.get("error")
    if error is not None and not isinstance(error, dict):
        raise Unreadable("a report's error must be an object")
    text = resolved.text
    detail = _error_text(error) if error else ""
    if detail:
        text = f"{text}; {detail}" if text else detail
    return Report(
        request_id=message_id,
        status=resolved.delivery,
        recipient=number_of(entry),
        error_code=resolved.code,
        error_text=text,
        reference=wire.as_text(entry.get("callbackData")),
    )


def _error_text(error: Mapping[str, Any]) -> str:
    """The error object as text, or "" for Infobip's NO_ERROR."""
    raw_id = error.get("id")
    error_id = wire.as_int(raw_id)
    if error_id is None and not wire.is_blank(raw_id):
        raise Unreadable("error.id must be an integer")
    name = wire.as_text(error.get("name"))
    if error_id == 0 or name.upper() == "NO_ERROR" or not (name or error_id):
        return ""
    label = " ".join(p for p in (name, f"({error_id})" if error_id is not None else "") if p)
    description = wire.as_text(error.get("description"))
    text = f"{label}: {description}" if description else label
    permanent = error.get("permanent")
    # The SDKs' own fixtures send `permanent` as a JSON string as well as a boolean.
    if permanent is True or (isinstance(permanent, str) and permanent.lower() == "true"):
        text += " [permanent]"
    return text
