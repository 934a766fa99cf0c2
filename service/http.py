"""Reading a request: the pieces every route module needs, the API's and the console's.

Kept apart from the routes themselves so that no route module has to import another
one to reach them.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from service.errors import BadRequest, Unparseable, ValidationFailed
from service.parsing import decode_json, int_of
from service.principals import ADMIN_PRINCIPAL, PRINCIPAL, Principal
from service.runtime import Runtime


def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


def principal(request: Request) -> Principal:
    """Whom the request acts for, as the bearer middleware found; routes it does not
    guard (the console's) act as admins, having checked their own sign-in."""
    found: Principal = request.scope.get(PRINCIPAL, ADMIN_PRINCIPAL)
    return found


async def read_json(request: Request) -> Any:
    body = await request.body()
    value = decode_json(body)
    # JSON can carry U+0000 only escaped; PostgreSQL cannot store it in text, and no
    # field of the API has a use for it.
    if b"\\u0000" in body and _holds_nul(value):
        raise Unparseable("the body holds a NUL character (U+0000)", field="body")
    return value


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_holds_nul(item) for item in value)
    return False


def page_args(request: Request, *, default: int = 50) -> tuple[int, int | None]:
    """(limit, cursor) from the query; a cursor is the opaque position of the last row."""
    limit = int_of(request.query_params.get("limit", str(default)), low=1, high=1000)
    if limit is None:
        raise ValidationFailed("limit must be a whole number from 1 to 1000", field="limit")
    raw_cursor = request.query_params.get("cursor")
    if raw_cursor is None or raw_cursor == "":
        return limit, None
    cursor = int_of(raw_cursor)
    if cursor is None:
        raise BadRequest("cursor is not one this API gave", field="cursor")
    return limit, cursor
