"""How long each stored field that comes from outside may be, in one place.

A provider or a client decides what it sends; these bounds decide what smsgw keeps.
Each is what the other side can really need: a phone number is at most 15 digits
(E.164) however it is written, an alphanumeric sender 11 characters, a message what
the longest concatenated SMS can carry, an identifier far less than a page. Past a
bound a request is refused (4xx) and nothing is stored; only a report's free text is
cut short instead, since refusing it would lose the status it carries. A NUL character
is refused the same way, except in free text, where it is shown as U+FFFD.
"""

from __future__ import annotations

from dataclasses import replace

from service.errors import CallbackInvalid
from service.model import InboundSms, Report
from service.parsing import ascii_digits

E164_DIGITS = 15
ALPHANUMERIC_SENDER = 11
ADDRESS = 32
"""A sender or recipient as providers write it: an E.164 number with '+', '00',
spaces or dashes, or an alphanumeric sender."""
ACCOUNT_SENDER = 20
"""An account's sender ID as configured, before `compose.check_sender` reads it."""
MESSAGE_TEXT = 255 * 153
"""Characters in the longest concatenated SMS: 255 parts of 153 GSM characters."""
IDENTIFIER = 128
"""A provider's request or message ID, a client_ref."""
ERROR_CODE = 64
ERROR_TEXT = 1000
ACCOUNT_NAME = 64
PROVIDER_NAME = 32
DESCRIPTION = 500
LINK = 500
"""An account's logo or sign-up URL."""
WEBHOOK_URL = 2000
CREDENTIAL = 512
OPTIONS_JSON = 4096
"""An account's options, as compact JSON."""
IDEMPOTENCY_KEY = 200
RULE_PATTERN = 200
RULE_REPLY = 1000
EVENT_FILTER = 100


NUL = "\x00"
"""No network or provider puts U+0000 in a number or an ID, and PostgreSQL cannot store
it in text: refused in identifying fields, shown as U+FFFD in free text."""


def _refuse_long(value: str, limit: int, field: str, what: str) -> None:
    if len(value) > limit:
        raise CallbackInvalid(f"{what} is longer than {limit} characters", field=field)
    if NUL in value:
        raise CallbackInvalid(f"{what} holds a NUL character", field=field)


def readable(text: str) -> str:
    return text.replace(NUL, "\ufffd")


def _refuse_unreal_address(value: str, field: str, what: str) -> None:
    """A number of more than 15 significant digits, or an alphanumeric sender of more
    than 11 characters, is not one a mobile network delivers."""
    _refuse_long(value, ADDRESS, field, what)
    if any(ch.isnumeric() and not ch.isascii() for ch in value):
        raise CallbackInvalid(f"{what} has digits other than 0-9", field=field)
    if any(ch.isalpha() for ch in value):
        _refuse_long(value, ALPHANUMERIC_SENDER, field, what)
    elif len(ascii_digits(value).lstrip("0")) > E164_DIGITS:
        raise CallbackInvalid(f"{what} has more than {E164_DIGITS} digits", field=field)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def checked_report(report: Report) -> Report:
    """`report` within the bounds: refused when an identifying field is too long to be
    real, its error text cut short."""
    _refuse_long(report.request_id, IDENTIFIER, "request_id", "the report's request ID")
    _refuse_unreal_address(report.recipient, "recipient", "the report's recipient")
    _refuse_long(report.error_code, ERROR_CODE, "error_code", "the report's error code")
    error_text = _clip(readable(report.error_text), ERROR_TEXT)
    return report if error_text == report.error_text else replace(report, error_text=error_text)


def checked_inbound(message: InboundSms) -> InboundSms:
    """`message` within the bounds, or refused: nothing in it is cut, since an inbound
    message stored in part is a different message."""
    _refuse_unreal_address(message.sender, "from", "the inbound message's sender")
    _refuse_unreal_address(message.recipient, "to", "the inbound message's recipient")
    _refuse_long(readable(message.text), MESSAGE_TEXT, "text", "the inbound message's text")
    _refuse_long(message.provider_id, IDENTIFIER, "id", "the inbound message's ID")
    text = readable(message.text)
    return message if text == message.text else replace(message, text=text)
