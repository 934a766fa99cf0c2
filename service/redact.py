"""Scrubbing secrets from text that will be stored, shown or logged."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import quote, quote_plus

REDACTED = "[redacted]"


def redact(text: str, secrets: Iterable[str], limit: int = 2000) -> str:
    """`text` truncated to `limit` characters with every secret, raw or URL-encoded, removed.

    Providers echo credentials back in URLs and error pages (1609SMS and Route Mobile
    take passwords as query parameters), so a stored response is never trusted as clean.
    """
    for secret in secrets:
        if len(secret) < 3:
            continue
        for form in {secret, quote(secret, safe=""), quote_plus(secret)}:
            text = text.replace(form, REDACTED)
    return text if len(text) <= limit else text[:limit] + "…"
