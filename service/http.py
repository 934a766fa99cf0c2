"""Reading a request: the pieces every route module needs, the API's and the console's.

Kept apart from the routes themselves so that no route module has to import another
one to reach them.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from service.errors import BadRequest, ValidationFailed
from service.runtime import Runtime


def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


async def read_json(request: Request) -> Any:
    body = await request.body()
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest("the body must be valid JSON", field="body") from exc


def page_args(request: Request, *, default: int = 50) -> tuple[int, int | None]:
    """(limit, cursor) from the query; a cursor is the opaque position of the last row."""
    raw_limit = request.query_params.get("limit", str(default))
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 1000:
        raise ValidationFailed("limit must be a whole number from 1 to 1000", field="limit")
    raw_cursor = request.query_params.get("cursor")
    if raw_cursor is None or raw_cursor == "":
        return int(raw_limit), None
    if not raw_cursor.isdigit() or len(raw_cursor) > 18:
        raise BadRequest("cursor is not one this API gave", field="cursor")
    return int(raw_limit), int(raw_cursor)
