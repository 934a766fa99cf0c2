"""Reading values out of provider answers and callbacks, the same way for every provider.

Providers send numbers as JSON numbers or as text, pad fields with spaces, write phone
numbers with '+', '00' or neither, and answer errors with HTML pages. These helpers
turn such values into what a handler compares and stores. Where a provider's wire
format needs a stricter reading, it is a parameter here, not a private copy there.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any, NamedTuple

from handlers.base import WireRequest, WireResponse
from service import parsing
from service.model import Outcome, RecipientResult, SendBatch

_TAG = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")
SNIPPET_CHARS = 200
"""Enough of an unexpected answer to recognise it in a log, short enough to store."""


class ErrorMeaning(NamedTuple):
    """What a provider's error code means: how the send ends, and a text for the operator."""

    outcome: Outcome
    text: str


def meanings_by_outcome(
    table: Mapping[Outcome, Mapping[str, str]],
) -> dict[str, ErrorMeaning]:
    """A provider's error codes, written grouped by how the send ends, looked up by code."""
    return {
        code: ErrorMeaning(outcome, text)
        for outcome, texts in table.items()
        for code, text in texts.items()
    }


def first_id(request_ids: Sequence[str]) -> str | None:
    """The ID a one-per-request status look-up asks for: the first, without the white
    space around it; None when there is none or it is blank, so that a look-up never
    turns into a listing of every message (`/Messages/.json`)."""
    first = request_ids[0].strip() if request_ids else ""
    return first or None


def resolve_base(base_url: str, default: str) -> str:
    """The account's base URL, or the provider's public one when the account has none;
    without a trailing slash, so that paths are simply appended."""
    return (base_url or default).rstrip("/")


def is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def as_int(value: Any, *, signed: bool = True) -> int | None:
    """An integer sent as a JSON number or as text ("004"); anything else is None.

    `signed=False` refuses text with a sign, for wire formats whose codes never carry
    one (IntelliSoftware), so that "+5" is not mistaken for status 5. Digits of other
    scripts (Arabic-Indic one) and numbers past 64 bits are None too (`service.parsing`).
    """
    return parsing.json_int(value, signed=signed)


def validity(option: Any, remaining: int | None, unit: int, most: int | None) -> int | None:
    """How long the provider may keep trying, in its unit of `unit` seconds: the
    message's own remaining validity rounded down (never kept past its end, at least
    one unit), else the account's `validity_period` option as configured; at most
    `most` units; None to send none."""
    value = as_int(option) if remaining is None else max(1, remaining // unit)
    if value is None or value < 1:
        return None
    return value if most is None else min(value, most)


def as_float(value: Any) -> float | None:
    """A finite number sent as a JSON number or as text; anything else is None."""
    return parsing.json_float(value)


def as_text(value: Any, *, strip: bool = True) -> str:
    """A scalar field as text; JSON numbers become their digits, containers nothing.

    `strip=False` is for message bodies, whose leading and trailing spaces are the
    sender's and must reach an auto-reply rule or the inbox unchanged.
    """
    if value is None or isinstance(value, dict | list | bool):
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value)
    return text.strip() if strip else text


def digits_of(number: str) -> str:
    return parsing.ascii_digits(number)


def number_key(number: str) -> str:
    """A number as providers echo it: digits, without '+', the '00' prefix or other
    leading zeros, so that every way of writing one number gives one key."""
    return digits_of(number).lstrip("0")


def same_number(a: str, b: str) -> bool:
    """Equal as numbers, whether written with '+', '00' or plain digits; a number
    without digits equals nothing."""
    return number_key(a) == number_key(b) != ""


SUBSCRIBER_DIGITS = 7
"""The fewest digits a number written without its country code may keep and still be
taken for the full number: shorter tails match too many subscribers."""


def same_subscriber(a: str, b: str) -> bool:
    """One number is the other written without its country code (or with a trunk
    zero), as providers that rewrite numbers echo them."""
    short, long = sorted((number_key(a), number_key(b)), key=len)
    return len(short) >= SUBSCRIBER_DIGITS and long.endswith(short)


def header(headers: Mapping[str, str], name: str) -> str:
    """A header by its lower-case name, whatever case the mapping keeps it in."""
    value = headers.get(name)
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == name), "")
    return value


RETRY_AFTER_LIMIT = 366 * 24 * 3600.0
"""The longest wait a provider's Retry-After can ask for here (the dispatcher's own
`dispatch.retry_after_max` is the one that counts); longer ones read as this."""
_DELTA_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?")


def retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Retry-After in seconds from `now`, between 0 and RETRY_AFTER_LIMIT; None when the
    header is absent or unreadable (negative, not a number, inf or nan, no date).

    Both forms of RFC 9110 are read: delta-seconds (any number of digits; a fraction is
    tolerated) and an HTTP-date in any of its three formats, a past date meaning now.
    """
    value = header(headers, "retry-after").strip()
    if _DELTA_SECONDS.fullmatch(value):
        whole = value.partition(".")[0].lstrip("0")
        # Compared by length first: int() refuses texts past 4,300 digits.
        if len(whole) > len(str(int(RETRY_AFTER_LIMIT))):
            return RETRY_AFTER_LIMIT
        return min(float(value), RETRY_AFTER_LIMIT)
    try:
        date = parsedate_to_datetime(value)
        if date.tzinfo is None:  # the asctime format, which is always GMT
            date = date.replace(tzinfo=UTC)
        seconds = date.timestamp() - (time.time() if now is None else now)
    except (ValueError, TypeError, OverflowError, IndexError):
        return None
    return min(max(seconds, 0.0), RETRY_AFTER_LIMIT)


NOT_TAKEN_STATUSES = frozenset({429, 503})
"""HTTP answers that prove the provider did not take a send: it is asking us to slow
down, or it is unavailable and took nothing. Any other 5xx (500, 502, 504...) may come
from a proxy or gateway in front of a provider that has already taken the message."""


def server_failure(status_code: int) -> Outcome | None:
    """TRANSIENT for 429 and 503, UNKNOWN for any other 5xx, None for the rest: the
    handler reads those itself."""
    if status_code in NOT_TAKEN_STATUSES:
        return Outcome.TRANSIENT
    if status_code >= 500:
        return Outcome.UNKNOWN
    return None


def status_failure(status_code: int) -> Outcome | None:
    """What an HTTP status decides before the body is read: the login refused (401, 403)
    is the account's error; otherwise `server_failure`."""
    if status_code in (401, 403):
        return Outcome.ACCOUNT_ERROR
    return server_failure(status_code)


def with_retry_after(result: RecipientResult, response: WireResponse) -> RecipientResult:
    """`result` carrying the answer's Retry-After when it is to be retried."""
    if result.outcome is not Outcome.TRANSIENT:
        return result
    return replace(result, retry_after=retry_after(response.headers))


def snippet(text: str) -> str:
    """An answer's text for an error message: tags dropped, white space folded, cut short."""
    return _SPACE.sub(" ", _TAG.sub(" ", text)).strip()[:SNIPPET_CHARS]


def describe_unreadable(provider: str, response: WireResponse, body: Any) -> str:
    """Why an answer could not be used: empty, not parseable (`body` None) or of an
    unexpected shape, with a snippet of it for the operator."""
    code = response.status_code
    shown = snippet(response.text)
    if not shown:
        return f"empty answer from {provider} (HTTP {code})"
    if body is None:
        return f"unreadable answer from {provider} (HTTP {code}): {shown}"
    return f"unexpected answer from {provider} (HTTP {code}): {shown}"


def missing_from_answer(response: WireResponse, what: str) -> RecipientResult:
    """A recipient the provider's answer says nothing about: refused rather than guessed,
    since nothing identifies the message if it went out after all."""
    return RecipientResult(
        Outcome.REFUSED,
        error_code=str(response.status_code),
        error_text=f"missing from {what}",
    )


def for_each(batch: SendBatch, result: RecipientResult) -> list[RecipientResult]:
    """One result standing for every message of the batch (the answer was about all)."""
    return [result for _ in batch.messages]


def json_api_headers(authorization: str, *, json_body: bool) -> dict[str, str]:
    headers = {"Authorization": authorization, "Accept": "application/json"}
    if json_body:
        headers["Content-Type"] = "application/json"
    return headers


def json_api_post(url: str, authorization: str, body: Any) -> WireRequest:
    """A submission to a JSON API that authorizes every call by header."""
    return WireRequest(
        "POST", url, headers=json_api_headers(authorization, json_body=True), json=body
    )


def json_api_get(
    url: str, authorization: str, params: Sequence[tuple[str, str]] = ()
) -> WireRequest:
    """A look-up (status, balance) on a JSON API that authorizes every call by header."""
    return WireRequest(
        "GET", url, params=params, headers=json_api_headers(authorization, json_body=False)
    )
