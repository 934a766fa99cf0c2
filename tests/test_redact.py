"""Secrets never survive into stored provider responses."""

from __future__ import annotations

import base64
import html
import json
import re
from urllib.parse import quote, quote_plus

from service.redact import REDACTED, Redactor, redact


def test_secrets_are_removed_raw_and_url_encoded() -> None:
    text = "GET /gw?clientpwd=p%40ss+word&x=p@ss word&token=T0K"
    cleaned = redact(text, ["p@ss word", "T0K"])
    assert "p@ss" not in cleaned and "p%40ss" not in cleaned and "T0K" not in cleaned
    assert cleaned.count(REDACTED) == 3


def test_long_text_is_truncated_after_redaction() -> None:
    secret = "abcdef"
    text = "x" * 1998 + secret
    cleaned = redact(text, [secret], limit=2000)
    assert "abc" not in cleaned and cleaned.startswith("x" * 1998)


SECRET = 'Pw[9x!q&z "/\\é+ ok'


def test_every_encoding_a_provider_echoes_is_removed() -> None:
    """Plain, JSON (also `\\/`, `\\u`, nested), URL (both hex cases, `+`, twice), HTML,
    base64 alone or after any user name, and these combined."""
    escaped = json.dumps(SECRET)[1:-1]
    encoded = quote(SECRET, safe="")
    basic = base64.b64encode(f"anyone:{SECRET}".encode()).decode()
    echoes = [
        SECRET,
        escaped,
        json.dumps(SECRET, ensure_ascii=False)[1:-1],
        escaped.replace("/", "\\/"),
        json.dumps(json.dumps(SECRET)),
        encoded,
        re.sub("%[0-9A-F]{2}", lambda m: m[0].lower(), encoded),
        quote_plus(SECRET),
        quote(encoded, safe=""),
        html.escape(SECRET),
        base64.b64encode(SECRET.encode()).decode(),
        basic,
        base64.urlsafe_b64encode(f"x:{SECRET}".encode()).decode(),
        quote(basic, safe=""),
        json.dumps(quote_plus(SECRET)),
    ]
    redactor = Redactor.of([SECRET])
    for echo in echoes:
        cleaned = redactor.text(f"token {echo} is not allowed")
        assert REDACTED in cleaned and "Pw" not in cleaned and "9x" not in cleaned, echo


def test_answers_are_scrubbed_as_bytes_and_other_text_is_left_alone() -> None:
    redactor = Redactor.of(["s3cret-value"], ["user"])
    body = b'{"error": "user s3cret-value denied", "id": "12345"}'
    assert redactor.bytes(body) == b'{"error": "user [redacted] denied", "id": "12345"}'
    assert Redactor.of(["ab"]).text("ab cab") == "ab cab"  # too short to look for
    assert Redactor().text("nothing to hide") == "nothing to hide"
