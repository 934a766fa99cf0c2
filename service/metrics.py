"""Prometheus metrics served at GET /metrics.

Each app owns its registry rather than using prometheus_client's global one, so
that several apps in one process (the tests) never share or collide on series.
Gauges that describe stored state are read from the store at scrape time; the rest
are counted where things happen: committed events, provider requests, callbacks.

Everything is per process. With `smsgw serve` and `smsgw worker` side by side, the
provider metrics of the worker's dispatcher are the worker's own and /metrics (on
`serve`) does not show them; the stored-state gauges are the same everywhere.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from typing import Any

import httpx
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.model import Event, Status
from service.store.protocol import Store

# SMS delivery takes from seconds to, for a phone that is off, a day or more.
_DLR_BUCKETS = (1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 10800, 21600, 43200, 86400)
# Up to the default dispatch.request_timeout (15 s) and a little beyond.
_PROVIDER_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30)
_CALLBACK_PATH = re.compile(r"^/callbacks/[^/]+/(dlr|inbound)$")
_CALLBACK_KINDS = ("dlr", "inbound")
_OUTCOMES = ("accepted", "rejected", "failed")


def _error_kind(exc: httpx.HTTPError) -> str:
    """The `kind` label of a provider request that got no answer."""
    if isinstance(exc, httpx.PoolTimeout):
        # No free connection in this process: saturation here, not at the provider.
        return "pool_timeout"
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return "connect"
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    return "transport"


def _callback_outcome(status: int) -> str:
    if status < 400:
        return "accepted"
    return "rejected" if status < 500 else "failed"


class Metrics:
    """One app's metrics and their registry.

    Callbacks are counted without their account label: the account is a path segment
    anyone can make up, and every made-up name would be a new series forever.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._messages = Gauge(
            "smsgw_messages",
            "Stored messages by account and current status.",
            ["account", "status"],
            registry=self.registry,
        )
        self._counters = Gauge(
            "smsgw_counter",
            "The kept counters of /v1/stats by account (requests, accepted, failed, "
            "delivered, undelivered, pending, unmatched).",
            ["account", "counter"],
            registry=self.registry,
        )
        self._dlr_latency = Histogram(
            "smsgw_dlr_latency_seconds",
            "Seconds from the provider's acceptance of a message to its final status.",
            ["account"],
            buckets=_DLR_BUCKETS,
            registry=self.registry,
        )
        self._callback_children: dict[tuple[str, str], Any] = {}
        self._callbacks = Counter(
            "smsgw_callbacks_total",
            "Provider callbacks answered, by kind (dlr, inbound) and outcome: accepted "
            "(2xx), rejected (4xx: bad key, unknown account, too large, unreadable) or "
            "failed (5xx: the provider should retry).",
            ["kind", "outcome"],
            registry=self.registry,
        )
        self._provider_seconds = Histogram(
            "smsgw_provider_request_seconds",
            "Seconds a provider took to answer a send request (answered requests only).",
            ["provider"],
            buckets=_PROVIDER_BUCKETS,
            registry=self.registry,
        )
        self._provider_errors = Counter(
            "smsgw_provider_errors_total",
            "Failed provider send requests by kind: connect, timeout, pool_timeout, "
            "transport (no answer), http_4xx, http_5xx (an error answer).",
            ["provider", "kind"],
            registry=self.registry,
        )
        self._client_refusals = Counter(
            "smsgw_client_refusals_total",
            "Sends refused to a client's key, by client and reason: quota_exceeded or "
            "rate_limited (429; nothing was queued).",
            ["client", "reason"],
            registry=self.registry,
        )
        self._outbox = Gauge(
            "smsgw_outbox_depth",
            "Messages in the outbox: waiting to be sent, waiting to retry, or in flight.",
            registry=self.registry,
        )
        self._webhook_backlog = Gauge(
            "smsgw_webhook_backlog",
            "Event deliveries to webhooks not yet acknowledged.",
            registry=self.registry,
        )
        self._inbox_depth = Gauge(
            "smsgw_inbox_depth",
            "Delivery-report callbacks stored (acknowledged) and not yet applied.",
            registry=self.registry,
        )
        self._inbox_lag = Gauge(
            "smsgw_inbox_lag_seconds",
            "Seconds the oldest stored callback not yet applied has waited; 0 when none.",
            registry=self.registry,
        )
        # Zeros from the start, so that rate() sees the first callback of each series.
        for kind in _CALLBACK_KINDS:
            for outcome in _OUTCOMES:
                self._callbacks.labels(kind, outcome)

    def observe_events(self, events: Sequence[Event]) -> None:
        """An EventBus sink. The store puts `latency_ms` only on final statuses reached
        after the provider accepted the message, so the data itself says what counts."""
        for event in events:
            latency_ms = event.data.get("latency_ms")
            if event.event.startswith("message.") and isinstance(latency_ms, int | float):
                self._dlr_latency.labels(event.account).observe(latency_ms / 1000)

    def callback_answered(self, kind: str, status: int) -> None:
        key = (kind, _callback_outcome(status))
        child = self._callback_children.get(key)
        if child is None:
            # labels() takes a lock and builds a key per call: once per series here.
            child = self._callback_children[key] = self._callbacks.labels(*key)
        child.inc()

    def provider_answered(self, provider: str, seconds: float, http_status: int) -> None:
        self._provider_seconds.labels(provider).observe(seconds)
        if http_status >= 400:
            kind = "http_4xx" if http_status < 500 else "http_5xx"
            self._provider_errors.labels(provider, kind).inc()

    def provider_failed(self, provider: str, exc: httpx.HTTPError) -> None:
        self._provider_errors.labels(provider, _error_kind(exc)).inc()

    def client_refused(self, client: str, reason: str) -> None:
        # Client names are an admin's to make, not a caller's: a bounded label.
        self._client_refusals.labels(client, reason).inc()

    async def render(self, store: Store, unmatched_before: str) -> bytes:
        """The exposition text, with the stored-state gauges read now."""
        gauges = await store.gauges()
        stats = (await store.stats(unmatched_before)).as_body()
        # No await from here on: concurrent scrapes cannot interleave their resets.
        self._messages.clear()
        for account in {account for account, _ in gauges.messages}:
            # Every status, zeros too, so that a series never vanishes when it empties.
            for status in Status:
                count = gauges.messages.get((account, status.value), 0)
                self._messages.labels(account, status.value).set(count)
        self._counters.clear()
        for account, counters in stats["accounts"].items():
            for name, value in counters.items():
                self._counters.labels(account, name).set(value)
        self._outbox.set(gauges.outbox)
        self._webhook_backlog.set(gauges.webhook_backlog)
        self._inbox_depth.set(gauges.inbox_depth)
        oldest = gauges.inbox_oldest
        self._inbox_lag.set(max(0.0, time.time() - oldest) if oldest is not None else 0.0)
        return generate_latest(self.registry)


class CallbackCounter:
    """Counts the answer to every provider callback.

    Pure ASGI and outermost, so that answers other middleware gives before any
    route runs (413 from BodyLimit) are counted like the routes' own.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = _CALLBACK_PATH.match(scope["path"]) if scope["type"] == "http" else None
        if match is None:
            await self.app(scope, receive, send)
            return
        kind = match[1]
        answered = False

        async def counting_send(message: Message) -> None:
            nonlocal answered
            if message["type"] == "http.response.start":
                answered = True
                self._metrics.callback_answered(kind, message["status"])
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        except Exception:
            # Starlette's ServerErrorMiddleware, outside this one, answers it with 500.
            if not answered:
                self._metrics.callback_answered(kind, 500)
            raise
