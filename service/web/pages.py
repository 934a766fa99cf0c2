"""General, History, a message's timeline, and Inbound with the suppression list."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from service.clock import iso
from service.errors import SmsgwError, ValidationFailed
from service.http import runtime
from service.model import MessageFilter, Status
from service.parsing import int_of
from service.phone import to_e164
from service.reconcile import FAILURES, is_final
from service.status_callbacks import callbacks_view
from service.usecases.messages import message_filter, message_view, stats_body
from service.web.render import client_error, form_of, page
from service.web.session import PREFIX

HOURS = 24
# Names of the counters in the order the General page shows them.
COUNTERS = ("requests", "accepted", "failed", "delivered", "undelivered", "pending", "unmatched")
_RESPONSE_SHOWN = 2000


def delivery_rate(counters: dict[str, int]) -> float | None:
    """Delivered out of the messages that reached a final outcome, or None before any."""
    final = counters["delivered"] + counters["undelivered"] + counters["failed"]
    return counters["delivered"] / final if final else None


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    height: float
    count: int


@dataclass(frozen=True, slots=True)
class Hour:
    label: str
    """"HH" UTC; shown under every third hour."""
    x: float
    delivered: Bar
    failed: Bar


@dataclass(frozen=True, slots=True)
class Chart:
    width: int
    height: int
    left: float
    """The x of the axis; tick labels go left of it."""
    bar: float
    """The width of one bar."""
    top: float
    """The y of the highest gridline, whose value is `peak`."""
    base: float
    peak: int
    hours: tuple[Hour, ...]
    delivered: int
    failed: int


def chart_start(now: datetime) -> datetime:
    """The first hour the chart shows: the current hour is the last of 24."""
    return now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=HOURS - 1)


def hourly_chart(rows: list[tuple[str, Status, int]], now: datetime) -> Chart:
    """Delivered against failed per hour for the last 24 hours, laid out for inline SVG."""
    start = chart_start(now)
    hours = [start + timedelta(hours=n) for n in range(HOURS)]
    keys = [h.strftime("%Y-%m-%dT%H") for h in hours]
    delivered = dict.fromkeys(keys, 0)
    failed = dict.fromkeys(keys, 0)
    for hour, status, count in rows:
        if hour in delivered:
            if status is Status.DELIVERED:
                delivered[hour] += count
            elif status in FAILURES:
                failed[hour] += count
    width, height, left, top, base = 720, 200, 36.0, 12.0, 176.0
    peak = max(1, *delivered.values(), *failed.values())
    step = (width - left) / HOURS
    bar = step * 0.38

    def bar_at(x: float, count: int) -> Bar:
        tall = (base - top) * count / peak
        return Bar(round(x, 1), round(base - tall, 1), round(tall, 1), count)

    return Chart(
        width,
        height,
        left,
        round(bar, 1),
        top,
        base,
        peak,
        tuple(
            Hour(
                hour.strftime("%H"),
                round(left + n * step + step / 2, 1),
                bar_at(left + n * step + step * 0.1, delivered[key]),
                bar_at(left + n * step + step * 0.1 + bar, failed[key]),
            )
            for n, (hour, key) in enumerate(zip(hours, keys, strict=True))
        ),
        sum(delivered.values()),
        sum(failed.values()),
    )


def _rows_arg(raw: str, default: int) -> int:
    """The "Maximum number of messages" box of History and Inbound, bounded like the API's
    limit."""
    if raw == "":
        return default
    rows = int_of(raw, low=1, high=1000)
    if rows is None:
        raise ValidationFailed(
            "the maximum number of messages must be a whole number from 1 to 1000", field="rows"
        )
    return rows


def _cursor_arg(raw: str) -> int | None:
    if raw == "":
        return None
    cursor = int_of(raw)
    if cursor is None:
        raise ValidationFailed("that page link is not one the console gave", field="cursor")
    return cursor


async def general(request: Request) -> Response:
    rt = runtime(request)
    now = datetime.now(UTC)
    stats = await stats_body(rt)
    last = await rt.store.list_messages(MessageFilter(), 1, None)
    context: dict[str, Any] = {
        "stats": stats,
        "rates": {
            "total": delivery_rate(stats["total"]),
            **{name: delivery_rate(c) for name, c in stats["accounts"].items()},
        },
        "counters": COUNTERS,
        "last": message_view(last[0]) if last else None,
        "response_shown": _RESPONSE_SHOWN,
        "chart": hourly_chart(await rt.store.final_by_hour(iso(chart_start(now))), now),
    }
    fragment = request.query_params.get("fragment") == "1"
    return page(request, "_general.html" if fragment else "general.html", **context)


async def history(request: Request) -> Response:
    rt = runtime(request)
    query = request.query_params
    values = {key: query.get(key, "") for key in ("status", "account", "to", "rows")}
    rows = rt.settings.web_history_rows
    context: dict[str, Any] = {
        "values": values,
        "accounts": [a.name for a in await rt.directory.all()],
        "messages": [],
        "older": None,
        "error": None,
    }
    status = 200
    try:
        rows = _rows_arg(values["rows"], rows)
        filters = message_filter(values)
        if filters.to:
            to = to_e164(filters.to, rt.settings.default_region, field="to")
            filters = MessageFilter(filters.status, filters.account, to)
        found = await rt.store.list_messages(filters, rows, _cursor_arg(query.get("cursor", "")))
    except SmsgwError as exc:
        if not client_error(exc):
            raise
        context["error"], status = exc, exc.status
    else:
        context["messages"] = [message_view(m) for m in found]
        if len(found) == rows:
            context["older"] = found[-1].seq
    context["rows"] = rows
    # The filters again, for the live refresh and the "older" link to keep.
    shown = urlencode([(key, value) for key, value in values.items() if value])
    context["request_query"] = f"{shown}&" if shown else ""
    fragment = query.get("fragment") == "1"
    return page(request, "_history.html" if fragment else "history.html", status=status, **context)


async def message(request: Request) -> Response:
    rt = runtime(request)
    found = await rt.store.get_message(request.path_params["id"])
    if found is None:
        return page(
            request, "error.html", status=404, title="Not found", message="No such message."
        )
    context: dict[str, Any] = {
        "m": message_view(found),
        "events": await rt.store.message_events(found.id),
        "callbacks": callbacks_view(await rt.store.status_callbacks(found.id)),
        "final": is_final(found.status),
    }
    fragment = request.query_params.get("fragment") == "1"
    return page(request, "_message.html" if fragment else "message.html", **context)


async def inbound(request: Request) -> Response:
    rt = runtime(request)
    query = request.query_params
    values = {"rows": query.get("rows", "")}
    rows = rt.settings.web_history_rows
    context: dict[str, Any] = {"values": values, "inbound": [], "older": None, "error": None}
    status = 200
    try:
        rows = _rows_arg(values["rows"], rows)
        found = await rt.store.list_inbound(rows, _cursor_arg(query.get("cursor", "")))
    except ValidationFailed as exc:
        context["error"], status = exc, exc.status
    else:
        context["inbound"] = found
        context["older"] = found[-1].id if len(found) == rows else None
    return page(
        request,
        "inbound.html",
        status=status,
        rows=rows,
        suppressions=await rt.store.list_suppressions(),
        removed=query.get("removed"),
        **context,
    )


async def remove_suppression(request: Request) -> Response:
    rt = runtime(request)
    number = form_of(request).get("number", "")
    removed = bool(number) and await rt.store.unsuppress(number)
    return RedirectResponse(f"{PREFIX}/inbound?removed={int(removed)}", status_code=303)
