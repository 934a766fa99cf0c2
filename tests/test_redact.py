"""Secrets never survive into stored provider responses."""

from __future__ import annotations

from service.redact import REDACTED, redact


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
