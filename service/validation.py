"""What every JSON body the API takes must be before its fields are read."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

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
