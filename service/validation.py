"""What every JSON body the API takes must be before its fields are read."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any
from urllib.parse import urlsplit

import httpx

from service import bounds
from service.errors import ValidationFailed


def json_object(body: Any, fields: Collection[str]) -> dict[str, Any]:
    """`body` as an object of known fields; the first unknown one (alphabetically, so
    the answer does not depend on key order) is named in the refusal."""
    if not isinstance(body, dict):
        raise ValidationFailed("the body must be a JSON object", field="body")
    unknown = sorted(set(body) - set(fields))
    if unknown:
        raise ValidationFailed(f"unknown field {unknown[0]!r}", field=unknown[0])
    return body


def http_url(value: Any, field: str) -> str:
    """A URL smsgw will POST to: http or https, with a host, within the bound."""
    problem = (
        f"{field} must be an http:// or https:// URL of at most {bounds.WEBHOOK_URL} characters"
    )
    if not isinstance(value, str) or len(value) > bounds.WEBHOOK_URL:
        raise ValidationFailed(problem, field=field)
    url = value.strip()
    try:
        parts = urlsplit(url)
        httpx.URL(url)
    except (ValueError, httpx.InvalidURL) as exc:
        raise ValidationFailed(problem, field=field) from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationFailed(problem, field=field)
    return url
