"""Stored events for log pipelines: NDJSON pages by cursor, and a live SSE stream.

Both read the events table by id, the order in which events were committed, so a
reader that resumes after the last id it saw gets every later event exactly once,
across restarts of either side. Each record has the keys of the log line.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from service.errors import BadRequest, Forbidden
from service.http import page_args, principal, runtime
from service.parsing import int_of

NEXT_CURSOR = "smsgw-next-cursor"
_STREAM_BATCH = 500
_HEARTBEAT = 15.0
# A stream ends after this long and its client reconnects with Last-Event-ID, so that
# no connection lives forever behind a proxy or holds up a shutdown.
_STREAM_LIFETIME = 300.0


def _after(request: Request) -> int:
    raw = (
        request.query_params.get("after")
        or request.headers.get("last-event-id")
        or request.query_params.get("cursor")
        or "0"
    ).strip()
    after = int_of(raw)
    if after is None:
        raise BadRequest("after must be an event_id this API gave", field="after")
    return after


def _admin_only(request: Request) -> None:
    """Events are not yet kept per client, and a client may see nothing of another's:
    until they are, the event log is for admin tokens only."""
    if not principal(request).is_admin:
        raise Forbidden(
            "the event log is not yet filtered per client; read it with an admin token",
            code="insufficient_scope",
        )


def _json_line(line: dict[str, Any]) -> str:
    return json.dumps(line, separators=(",", ":"), ensure_ascii=False)


async def list_events(request: Request) -> Response:
    _admin_only(request)
    rt = runtime(request)
    limit, _ = page_args(request, default=100)
    after = _after(request)
    events = await rt.store.events_after(after, limit)
    body = "".join(_json_line(rt.event_format.line(e)) + "\n" for e in events)
    return Response(
        body,
        media_type="application/x-ndjson",
        headers={NEXT_CURSOR: str(events[-1].id if events else after)},
    )


async def stream_events(request: Request) -> Response:
    _admin_only(request)
    rt = runtime(request)
    after = _after(request)

    async def frames() -> AsyncIterator[str]:
        cursor = after
        started = last_sent = time.monotonic()
        yield "retry: 1000\n\n"
        while time.monotonic() - started < _STREAM_LIFETIME:
            events = await rt.store.events_after(cursor, _STREAM_BATCH)
            for event in events:
                data = _json_line(rt.event_format.line(event))
                yield f"id: {event.id}\nevent: {event.event}\ndata: {data}\n\n"
            if events:
                cursor = events[-1].id
                last_sent = time.monotonic()
                continue
            if time.monotonic() - last_sent >= _HEARTBEAT:
                yield ": keep-alive\n\n"
                last_sent = time.monotonic()
            await rt.events.wait(1.0)

    return StreamingResponse(
        frames(),
        media_type="text/event-stream",
        headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
    )


ROUTES = [
    Route("/v1/events", list_events, methods=["GET"]),
    Route("/v1/events/stream", stream_events, methods=["GET"]),
]
