"""Every provider's callbacks as the fuzzers of tests/test_handlers.py write them: a
small model of each provider's DLR and inbound wire format, and the hostile values
to put into them."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

TWILIO_SID = "AC" + "f" * 32
TWILIO_TOKEN = "fuzz-auth-token"
CREDENTIALS = {
    "token": "t0k",
    "username": "user",
    "password": "pa55",
    "api_key": "k3y",
    "account_sid": TWILIO_SID,
    "auth_token": TWILIO_TOKEN,
}
RECIPIENT = "46700000001"
SENTINEL = "fz-sentinel"
"""A sandbox account whose reports mark where one example's events end."""

# -- what each provider sends ---------------------------------------------------------


@dataclass(frozen=True)
class Raw:
    """A JSON literal written as is: NaN, Infinity, an integer of 5,000 digits."""

    text: str


@dataclass(frozen=True)
class Wire:
    """One callback: its fields and how they travel (json, form or query)."""

    fields: dict[str, Any]
    encoding: str = "json"


@dataclass(frozen=True)
class Provider:
    statuses: dict[str, tuple[Any, str]]
    """Our status name -> (the provider's wire status, our status as events show it)."""
    dlr: Callable[[list[tuple[str, Any]]], Wire] | None
    """Reports (request ID, wire status) as one callback; None: refuses every DLR."""
    batch: bool
    """Whether one DLR callback may hold several reports."""
    numeric: tuple[str, ...]
    """Dotted paths of numeric fields the handler reads in a DLR."""
    inbound: Callable[[str, str, str], Wire] | None
    """(from, text, provider ID) as one callback; None: refuses every inbound call."""
    encodings: tuple[str, ...] = ("json", "form", "query")


def _one(make: Callable[[str, Any], dict[str, Any]]) -> Callable[[list[tuple[str, Any]]], Wire]:
    def build(reports: list[tuple[str, Any]]) -> Wire:
        [(rid, status)] = reports
        return Wire(make(rid, status))

    return build


def _infobip_dlr(reports: list[tuple[str, Any]]) -> Wire:
    results = [
        {
            "messageId": rid,
            "to": RECIPIENT,
            "status": status,
            "error": {"id": 0, "name": "NO_ERROR"},
        }
        for rid, status in reports
    ]
    return Wire({"results": results})


def _infobip_status(group: int, group_name: str, code: int, name: str) -> dict[str, Any]:
    return {"groupId": group, "groupName": group_name, "id": code, "name": name}


def _clickatell_dlr(reports: list[tuple[str, Any]]) -> Wire:
    items = [
        {"integrationName": "fz", "messageId": r, "to": RECIPIENT, "statusCode": s}
        for r, s in reports
    ]
    return Wire(items[0] if len(items) == 1 else {"": items})


PROVIDERS: dict[str, Provider] = {
    "connectel": Provider(
        {"delivered": (1, "delivered"), "undelivered": (5, "undelivered"),
         "enroute": (0, "enroute")},
        _one(lambda r, s: {"action": "dlr", "requestid": r, "statusInt": s,
                           "statusStr": {0: "ENROUTE", 1: "DELIVRD", 5: "UNDELIV"}[s],
                           "recipient": RECIPIENT}),
        False,
        ("statusInt",),
        lambda f, t, i: Wire({"from": f, "to": RECIPIENT, "requestid": i, "message": t}),
    ),
    "routemobile": Provider(
        {"delivered": ("DELIVRD", "delivered"), "expired": ("EXPIRED", "expired")},
        _one(lambda r, s: {"sMessageId": r, "sStatus": s, "sMobileNo": RECIPIENT,
                           "iErrCode": "000"}),
        False,
        (),  # iErrCode is kept as text, never read as a number
        None,
        ("form", "query"),
    ),
    "intellisoftware": Provider(
        {"delivered": ("4", "delivered"), "expired": ("8", "expired"), "enroute": ("3", "enroute")},
        _one(lambda r, s: {"msgid": r, "status": s, "toaddr": RECIPIENT}),
        False,
        ("status",),
        lambda f, t, i: Wire({"from": f, "to": RECIPIENT, "text": t, "msgid": i}),
        ("form", "query"),
    ),
    "sms1609": Provider({}, None, False, (), None),
    "infobip": Provider(
        {
            "delivered": (_infobip_status(3, "DELIVERED", 5, "DELIVERED_TO_HANDSET"), "delivered"),
            "expired": (_infobip_status(4, "EXPIRED", 15, "EXPIRED_EXPIRED"), "expired"),
        },
        _infobip_dlr,
        True,
        ("results.0.status.id", "results.0.status.groupId", "results.0.error.id"),
        lambda f, t, i: Wire({"results": [{"messageId": i, "from": f, "to": RECIPIENT,
                                           "text": t, "smsCount": 1}],
                              "messageCount": 1, "pendingMessageCount": 0}),
        ("json",),
    ),
    "clickatell": Provider(
        {"delivered": (4, "delivered"), "expired": (10, "expired"), "enroute": (3, "enroute")},
        _one(lambda r, s: {"integrationName": "fz", "messageId": r, "to": RECIPIENT,
                           "statusCode": s}),
        False,
        ("statusCode",),
        lambda f, t, i: Wire({"integrationName": "fz", "messageId": i, "fromNumber": f,
                              "toNumber": RECIPIENT, "text": t}),
    ),
    "twilio": Provider(
        {"delivered": ("delivered", "delivered"), "undelivered": ("undelivered", "undelivered")},
        _one(lambda r, s: {"MessageSid": r, "MessageStatus": s, "To": "+" + RECIPIENT,
                           "AccountSid": TWILIO_SID, "ErrorCode": "30003"}),
        False,
        ("ErrorCode",),
        lambda f, t, i: Wire({"MessageSid": i, "SmsSid": i, "From": f, "To": "+" + RECIPIENT,
                              "Body": t, "SmsStatus": "received", "AccountSid": TWILIO_SID}),
        ("form",),
    ),
    "sandbox": Provider(
        {"delivered": ("DELIVERED", "delivered"), "expired": ("EXPIRED", "expired")},
        _one(lambda r, s: {"id": r, "status": s, "to": RECIPIENT}),
        False,
        (),
        lambda f, t, i: Wire({"from": f, "text": t, "to": RECIPIENT, "id": i}),
    ),
}  # fmt: skip


# -- hostile values -------------------------------------------------------------------

# Superscript two, Arabic-Indic three, fullwidth three, Arabic-Indic one, and mixtures.
NON_ASCII_DIGITS = ("\u00b2", "\u0663", "\uff13", "\u0661", "\u0663\u0664\u0665", "1\u00b2")
HUGE_INTEGER = "9" * 5000
# +46700000001 in Arabic-Indic, in fullwidth, and with one fullwidth seven.
FOREIGN_NUMBERS = (
    "\u0664\u0666\u0667" + "\u0660" * 7 + "\u0661",
    "\uff14\uff16\uff17" + "\uff10" * 7 + "\uff11",
    "46\uff1700000001",
)
NON_FINITE = ("NaN", "Infinity", "-Infinity")
DEEP = "[" * 30000


def with_value(fields: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """`fields` with the value at the dotted `path` replaced."""
    copied: Any = json.loads(json.dumps(fields))
    *parents, last = path.split(".")
    node = copied
    for step in parents:
        node = node[int(step)] if isinstance(node, list) else node[step]
    node[last] = value
    result: dict[str, Any] = copied
    return result


def json_text(value: Any) -> str:
    """JSON, with every Raw written as its literal."""
    raws: list[str] = []

    def mark(item: Any) -> Any:
        if isinstance(item, Raw):
            raws.append(item.text)
            return f"\x00raw{len(raws) - 1}\x00"
        if isinstance(item, dict):
            return {k: mark(v) for k, v in item.items()}
        if isinstance(item, list):
            return [mark(v) for v in item]
        return item

    text = json.dumps(mark(value), ensure_ascii=False)
    for n, raw in enumerate(raws):
        text = text.replace(json.dumps(f"\x00raw{n}\x00"), raw)
    return text
