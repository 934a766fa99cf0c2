"""Phone numbers to E.164, validated against libphonenumber's metadata."""

from __future__ import annotations

import re

import phonenumbers

from service.errors import ValidationFailed

# Separators people type inside a number; anything else (letters, '#', '*',
# 'ext') is rejected rather than guessed at, since phonenumbers would otherwise
# read vanity letters as digits or pull a number out of surrounding text.
_SEPARATORS = re.compile(r"[ \-.()]")
_SHAPE = re.compile(r"(\+|00)?([0-9]+)", re.ASCII)
# Generous bound on what we hand to the parser; E.164 itself is at most 15 digits.
_MAX_RAW = 64
_SHOWN = 32


def _invalid(raw: str, field: str) -> ValidationFailed:
    shown = raw if len(raw) <= _SHOWN else raw[:_SHOWN] + "…"
    return ValidationFailed(
        f"{shown!r} is not a valid phone number", field=field, code="invalid_phone"
    )


def _valid_e164(number: str, region: str | None) -> str | None:
    try:
        parsed = phonenumbers.parse(number, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def to_e164(raw: str, default_region: str = "", *, field: str = "to") -> str:
    """`raw` as "+<digits>", or `ValidationFailed` naming `field`.

    A leading "+" or "00" means international. Bare digits are first tried as a
    national number of `default_region` (an ISO code such as "SE") when one is
    given, then as international digits without the "+".
    """
    region = default_region.upper()
    if region and region not in phonenumbers.SUPPORTED_REGIONS:
        # A configuration mistake, not the client's: fail loudly instead of a 422.
        raise ValueError(f"unknown default region {default_region!r}")

    if len(raw) > _MAX_RAW:
        raise _invalid(raw, field)
    shape = _SHAPE.fullmatch(_SEPARATORS.sub("", raw.strip()))
    if shape is None:
        raise _invalid(raw, field)
    prefix, digits = shape.groups()

    result: str | None = None
    if prefix:
        result = _valid_e164("+" + digits, None)
    else:
        if region:
            result = _valid_e164(digits, region)
        if result is None:
            result = _valid_e164("+" + digits, None)
    if result is None:
        raise _invalid(raw, field)
    return result


def e164_or_as_given(raw: str, default_region: str = "") -> str:
    """A number a provider reports, in E.164 when it is one: senders arrive with and
    without '+', and an opt-out must match the numbers we send to. Short codes and
    alphanumeric senders stay as they came."""
    try:
        return to_e164(raw, default_region)
    except ValidationFailed:
        return raw.strip()
