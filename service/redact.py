"""Scrubbing secrets from text that will be stored, shown or logged.

Providers echo what they were sent: in error texts (`token <token> is not allowed`),
in JSON bodies (where `/` may come back as `\\/` and `"` as `\\"`), in URLs and form
fields (`%2F` or `%2f`, `+` for a space), in HTML error pages (`&quot;`), and in
headers that repeat the request's `Authorization: Basic base64(user:password)`. A
secret is looked for in all of these at once: each of its characters may appear in
any of its encodings, so combinations (a URL-encoded secret inside a JSON string,
a JSON-escaped one in a query) are found too. Its base64 form is looked for at each
of the three alignments it can take inside a longer base64 text, which covers
`user:password` whatever the user, and each base64 form may itself be encoded.

Matching runs on bytes, so that a provider's body is scrubbed before anything reads
it (`service.transport.execute`), whatever its character set.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

from service import linear_regex

REDACTED = "[redacted]"
MIN_SECRET = 3
"""Shorter values would match everywhere; no provider issues credentials that short."""
MIN_BASE64_CORE = 6
"""A base64 core shorter than this (from a short secret) would match random base64."""

_NAMED_ENTITIES = {"&": "amp", '"': "quot", "'": "apos", "<": "lt", ">": "gt"}
_JSON_SHORT = {'"', "\\", "/"}
_ESCAPES = rb"\\{1,7}"
"""One backslash, or the several of a JSON string inside a JSON string."""


def _hex(value: int, width: int) -> bytes:
    """`value` in hex, matching either case."""
    digits = f"{value:0{width}x}"
    return b"".join(f"[{d}{d.upper()}]".encode() if d.isalpha() else d.encode() for d in digits)


def _json_units(char: str) -> list[int]:
    """The UTF-16 code units a JSON `\\u` escape writes `char` as."""
    encoded = char.encode("utf-16-be")
    return [int.from_bytes(encoded[i : i + 2], "big") for i in range(0, len(encoded), 2)]


@lru_cache(maxsize=512)
def _char(char: str) -> bytes:
    """A pattern for one character in any encoding a provider may echo it in."""
    raw = char.encode("utf-8")
    forms = [re.escape(raw)]
    # URL-encoded (upper or lower case hex), or encoded twice (%25XX).
    forms.append(b"".join(rb"%(?:25)?" + _hex(byte, 2) for byte in raw))
    forms.append(b"".join(rb"\\x" + _hex(byte, 2) for byte in raw))
    if char == " ":
        forms.append(rb"\+")
    units = _json_units(char)
    forms.append(b"".join(_ESCAPES + b"u" + _hex(unit, 4) for unit in units))
    if char in _JSON_SHORT:
        forms.append(_ESCAPES + re.escape(raw))
    code = ord(char)
    forms.append(b"&#0*" + str(code).encode() + b";")
    forms.append(b"&#[xX]0*" + _hex(code, len(f"{code:x}")) + b";")
    if char in _NAMED_ENTITIES:
        forms.append(b"&" + _NAMED_ENTITIES[char].encode() + b";")
    return b"(?:" + b"|".join(forms) + b")"


def _base64_forms(secret: bytes, companions: Iterable[str]) -> set[str]:
    """The secret's base64 text as it appears inside any base64 text (both alphabets)."""
    exact = [secret, *(f"{c}:".encode() + secret for c in companions)]
    forms = {base64.b64encode(value).decode().rstrip("=") for value in exact}
    for offset in range(3):
        # Bits of the characters before and after the secret's own leave out the first
        # and last base64 characters; what is left is the same at every position.
        encoded = base64.b64encode(b"\0" * offset + secret).decode()
        core = encoded[(8 * offset + 5) // 6 : (8 * (offset + len(secret))) // 6]
        if len(core) >= MIN_BASE64_CORE:
            forms.add(core)
    return forms | {f.translate(str.maketrans("+/", "-_")) for f in forms}


class _Substituter(Protocol):
    def sub(self, replacement: bytes, data: bytes) -> bytes: ...


@lru_cache(maxsize=256)
def _pattern(secrets: frozenset[str], companions: frozenset[str]) -> _Substituter | None:
    forms: set[str] = set()
    for secret in secrets:
        if len(secret) >= MIN_SECRET:
            forms.add(secret)
            forms |= _base64_forms(secret.encode("utf-8"), companions)
    if not forms:
        return None
    # Longest first: a Basic-auth form is scrubbed whole, not just its secret's part.
    ordered = sorted(forms, key=lambda f: (-len(f), f))
    pattern = b"|".join(b"".join(_char(c) for c in form) for form in ordered)
    # RE2's alternation is leftmost-first too, so the longest form still wins.
    return linear_regex.compile_bytes(pattern) or re.compile(pattern)


@dataclass(frozen=True, slots=True)
class Redactor:
    """An account's secrets, and the values sent beside them (a username, an account
    SID) that form `companion:secret` for HTTP Basic authentication."""

    secrets: frozenset[str] = frozenset()
    companions: frozenset[str] = frozenset()

    @classmethod
    def of(cls, secrets: Iterable[str], companions: Iterable[str] = ()) -> Redactor:
        return cls(frozenset(s for s in secrets if s), frozenset(c for c in companions if c))

    def bytes(self, data: bytes) -> bytes:
        pattern = _pattern(self.secrets, self.companions)
        return data if pattern is None else pattern.sub(REDACTED.encode(), data)

    def text(self, text: str) -> str:
        if _pattern(self.secrets, self.companions) is None:
            return text
        return self.bytes(text.encode("utf-8", errors="surrogatepass")).decode(
            "utf-8", errors="replace"
        )


def truncate(text: str, limit: int = 2000) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def redact(text: str, secrets: Iterable[str], limit: int = 2000) -> str:
    """`text` with every secret removed, in any encoding, then cut to `limit` characters."""
    return truncate(Redactor.of(secrets).text(text), limit)
