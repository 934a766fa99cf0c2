"""Reading JSON and numbers that come from outside, strictly and within limits.

Python's own readers are generous in ways a hostile client or a broken provider can
use: `json.loads` takes `NaN` and `Infinity` (which no view can serialize again) and
recurses into RecursionError on deep nesting; `str.isdigit` and `int()` take
superscript, Arabic-Indic and full-width digits; `int()` refuses more than 4,300
digits with a ValueError. Every route and every handler reads JSON and numbers here
instead, so that such input is a clear `Unparseable` (400), or None for a caller to
refuse, and never a crash.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Any, TypeVar, overload

import msgspec

from service.errors import Unparseable

T = TypeVar("T")

MAX_DEPTH = 32
"""Nesting of arrays and objects; no provider or client body needs more than a few."""
INT_MIN, INT_MAX = -(2**63), 2**63 - 1
"""JSON integers must fit what the stores hold (a signed 64-bit column)."""
MAX_DIGITS = 18
"""Digits of an integer written as text: every 18-digit number fits in 64 bits."""
MAX_NUMBER_CHARS = 64
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,3})?", re.ASCII)

_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_DIGITS = b"0" * (MAX_DIGITS + 1)
_decoder = msgspec.json.Decoder()


@overload
def decode_json(data: bytes | str, *, field: str = "body") -> Any: ...
@overload
def decode_json(data: bytes | str, type: type[T], *, field: str = "body") -> T: ...
def decode_json(data: bytes | str, type: Any = Any, *, field: str = "body") -> Any:
    """Strict JSON: no NaN or Infinity, no lone surrogates, at most MAX_DEPTH levels,
    integers within 64 bits; plain Python objects unless `type` names a msgspec type."""
    try:
        raw = data.encode() if isinstance(data, str) else data
        value = _decoder.decode(raw) if type is Any else msgspec.json.decode(raw, type=type)
    except RecursionError as exc:
        raise Unparseable(_too_deep(field), field=field) from exc
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeError) as exc:
        raise Unparseable(f"the {field} must be valid JSON: {exc}", field=field) from exc
    # msgspec takes up to 4,300 digits and nests until RecursionError; the walk is only
    # for text that could hold too deep a tree or too long an integer, since the DLR
    # path is hot and a report of a few fields has neither.
    if isinstance(value, dict | list) and (
        raw.count(b"[") + raw.count(b"{") > MAX_DEPTH
        or _LONG_DIGITS in raw.translate(_DIGITS_AS_ZERO)
    ):
        check_tree(value, field)
    elif isinstance(value, int) and not INT_MIN <= value <= INT_MAX:
        raise Unparseable(_too_long(field), field=field)
    return value


def _too_long(field: str) -> str:
    return f"the {field} has an integer outside the 64-bit range"


def _too_deep(field: str) -> str:
    return f"the {field} nests JSON deeper than {MAX_DEPTH} levels"


_SCALARS = (str, bool, type(None))


def check_tree(root: dict[str, Any] | list[Any], field: str) -> None:
    """`root` is what strict JSON can carry: text keys, at most MAX_DEPTH levels, 64-bit
    integers, finite floats, text, booleans and null. For values that did not come
    through `decode_json` (a TOML file's options, say), and for the ones that did."""
    # Iterative, so that checking a deep document cannot itself recurse too deep.
    pending: list[tuple[Any, int]] = [(root, 1)]
    while pending:
        node, depth = pending.pop()
        if depth > MAX_DEPTH:
            raise Unparseable(_too_deep(field), field=field)
        if type(node) is dict:
            if not all(type(key) is str for key in node):
                raise Unparseable(f"the {field} has a key that is not text", field=field)
            items = node.values()
        else:
            items = node
        for item in items:
            kind = type(item)
            if kind is dict or kind is list:
                pending.append((item, depth + 1))
            elif kind is int:
                if not INT_MIN <= item <= INT_MAX:
                    raise Unparseable(_too_long(field), field=field)
            elif kind is float:
                if not math.isfinite(item):
                    raise Unparseable(f"the {field} has a number that is not finite", field=field)
            elif kind not in _SCALARS:
                raise Unparseable(f"the {field} has a value JSON cannot carry", field=field)


def int_of(
    text: str,
    *,
    signed: bool = False,
    low: int | None = None,
    high: int | None = None,
    max_digits: int = MAX_DIGITS,
) -> int | None:
    """An integer written in ASCII digits (a sign only when `signed`), at most
    `max_digits` long and within [low, high]; anything else is None."""
    digits = text[1:] if signed and text[:1] in ("+", "-") else text
    if not is_digits(digits) or len(digits) > max_digits:
        return None
    number = int(text)
    if (low is not None and number < low) or (high is not None and number > high):
        return None
    return number


def float_of(text: str) -> float | None:
    """A finite decimal number in ASCII ("12", "-0.5", "1e3"); no "nan", "inf", "1_0",
    or digits of other scripts, which Python's float() would take."""
    if len(text) > MAX_NUMBER_CHARS or not _DECIMAL.fullmatch(text):
        return None
    number = float(text)
    return number if math.isfinite(number) else None


def json_int(value: Any, *, signed: bool = True) -> int | None:
    """An integer sent as a JSON number or as text ("004"); anything else is None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if INT_MIN <= value <= INT_MAX else None
    if isinstance(value, float):
        return int(value) if value.is_integer() and abs(value) < 2.0**63 else None
    if isinstance(value, str):
        return int_of(value.strip(), signed=signed)
    return None


def json_float(value: Any) -> float | None:
    """A finite number sent as a JSON number or as text; anything else is None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return float(value) if INT_MIN <= value <= INT_MAX else None
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return float_of(value.strip())
    return None


def ascii_digits(text: str) -> str:
    """The ASCII digits of `text`, in order; digits of other scripts are not digits here."""
    return "".join(ch for ch in text if "0" <= ch <= "9")


def is_digits(text: str) -> bool:
    """Non-empty and ASCII digits only: what `str.isdigit` would be without '²' or '٣'."""
    return text.isascii() and text.isdigit()


_INSTANT = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,6})?)?"
    r"(?:[Zz]|[+-][0-9]{2}:?[0-9]{2})",
    re.ASCII,
)


def instant_of(text: str) -> float | None:
    """Epoch seconds of an ISO-8601 date and time that carries its UTC offset ("Z" or
    "+02:00"), in ASCII digits; a time without an offset is ambiguous, so it is None
    like anything else that is not such a time."""
    if len(text) > MAX_NUMBER_CHARS or not _INSTANT.fullmatch(text):
        return None
    try:
        moment = datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
        return moment.timestamp()
    except (ValueError, OverflowError):
        return None
