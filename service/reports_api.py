"""Stored delivery-report callbacks: /v1/reports to inspect them, /v1/reports/replay to
apply them again.

Each entry is one callback as it came (secrets removed) with what became of each of
its reports: pending (not yet applied), matched (with its message), parked (its
message's send answer is not recorded yet), unmatched (parked past `dlr.unmatched_ttl`)
or duplicate (the same report was kept before). Replaying is idempotent: a report
applied before changes nothing, and a parked one finds its message if it is known now.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from service.errors import ValidationFailed
from service.http import page_args, read_json, runtime
from service.model import InboxFilter
from service.usecases.reports import (
    REPLAY_LIMIT,
    cursor,
    inbox_filter,
    inbox_view,
    replay,
    unmatched_before,
)
from service.validation import json_object

_FILTERS = ("account", "state", "since", "until")


async def list_reports(request: Request) -> Response:
    rt = runtime(request)
    limit, _ = page_args(request, default=50)
    filters = inbox_filter(request.query_params)
    after = cursor(request.query_params.get("after"))
    records = await rt.store.list_inbox(filters, after, limit, unmatched_before(rt))
    return JSONResponse(
        {
            "reports": [inbox_view(r) for r in records],
            "next_cursor": str(records[-1].id) if len(records) == limit else None,
        }
    )


async def replay_reports(request: Request) -> Response:
    rt = runtime(request)
    body = json_object(await read_json(request), (*_FILTERS, "ids", "after"))
    ids = body.get("ids")
    if ids is not None:
        if (
            not isinstance(ids, list)
            or not ids
            or not all(type(i) is int and 0 < i < 2**63 for i in ids)
        ):
            raise ValidationFailed("ids must be a list of the reports' ids", field="ids")
        if len(ids) > REPLAY_LIMIT or len(body) > 1:
            raise ValidationFailed(
                f"give at most {REPLAY_LIMIT} ids, and no filter beside them", field="ids"
            )
        filters = InboxFilter(ids=tuple(sorted(set(ids))))
        after = 0
    else:
        filters = inbox_filter(body)
        raw_after = body.get("after")
        if raw_after is not None and not isinstance(raw_after, str):
            raise ValidationFailed("after must be a cursor this API gave", field="after")
        after = cursor(raw_after)
    replayed, next_cursor = await replay(rt, filters, after)
    return JSONResponse(
        {"replayed": replayed, "next_cursor": str(next_cursor) if next_cursor else None}
    )


ROUTES = [
    Route("/v1/reports", list_reports, methods=["GET"]),
    Route("/v1/reports/replay", replay_reports, methods=["POST"]),
]
