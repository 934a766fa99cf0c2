"""Outbound event webhooks, signed as the Standard Webhooks spec describes.

Nothing is added to the write path of the events themselves: the worker reads the
events table behind each webhook's cursor and queues one delivery row per wanted
event in a single transaction, so a burst of DLRs costs one extra write per pass,
not per event. Deliveries are rows, so they survive a restart; a claim is a lease,
so two processes never send one delivery at once and a crashed process's claim runs
out into a retry. Receivers get each event at least once and deduplicate on the
`webhook-id` header, which stays the same across retries.

Delivery outcomes are logged (`webhook.delivered`, `.retry`, `.gave_up`,
`.disabled`) but never stored as events: stored, they would become deliveries of
their own.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import random
import re
import secrets
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
import structlog

from handlers import wire
from service import bounds
from service.accounts import MASK
from service.errors import ValidationFailed
from service.events import EventBus, EventFormat
from service.model import (
    Event,
    NewWebhook,
    Webhook,
    WebhookAttempt,
    WebhookDelivery,
    WebhookOutcome,
)
from service.redact import redact
from service.settings import Settings
from service.store import Store
from service.validation import json_object
from service.worker import run_passes

_log = structlog.get_logger("smsgw.webhooks")

SECRET_PREFIX = "whsec_"  # noqa: S105 -- the format's prefix, not a secret
_FIELDS = {"url", "events", "description"}
_FILTER = re.compile(r"\*|[a-z0-9_]+(\.[a-z0-9_]+)*(\.\*)?")
_MAX_FILTERS = 50
_ERROR_SNIPPET = 200
# Past 2**30 the doubling is far beyond any cap; the bound keeps floats finite.
_MAX_DOUBLINGS = 30


# -- signing -----------------------------------------------------------------------


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def payload(event: Event, event_format: EventFormat) -> bytes:
    """The body: the event exactly as its log line and the events API show it."""
    document = {"type": event.event, "timestamp": event.ts, "data": event_format.line(event)}
    return json.dumps(document, separators=(",", ":")).encode()


def signed_headers(secret: str, event: Event, body: bytes, now: float) -> dict[str, str]:
    msg_id = f"evt_{event.id}"
    timestamp = int(now)
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(secret, msg_id, timestamp, body),
    }


# -- retry schedule ----------------------------------------------------------------


def retry_delay(attempts: int, base: float, cap: float, asked: float | None) -> float:
    """Exponential backoff with full jitter, or longer when the receiver asks for it."""
    ceiling = min(cap, base * 2 ** min(attempts - 1, _MAX_DOUBLINGS))
    return max(random.uniform(0, ceiling), asked or 0.0)


# -- API input and views -----------------------------------------------------------


def webhook_from_body(body: Any) -> NewWebhook:
    body = json_object(body, _FIELDS)
    description = body.get("description", "")
    if not isinstance(description, str) or len(description) > bounds.DESCRIPTION:
        raise ValidationFailed(
            f"description must be text of at most {bounds.DESCRIPTION} characters",
            field="description",
        )
    return NewWebhook(
        id="wh_" + secrets.token_hex(8),
        url=http_url(body.get("url"), "url"),
        secret=new_secret(),
        events=_filters(body.get("events", [])),
        description=description.strip(),
    )


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


def _filters(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) > _MAX_FILTERS:
        raise ValidationFailed(
            f"events must be a list of at most {_MAX_FILTERS} event names", field="events"
        )
    for index, item in enumerate(value):
        if (
            not isinstance(item, str)
            or len(item) > bounds.EVENT_FILTER
            or not _FILTER.fullmatch(item)
        ):
            raise ValidationFailed(
                "an event filter is an event name (message.delivered), a prefix glob "
                "(message.*) or *",
                field=f"events[{index}]",
            )
    return tuple(dict.fromkeys(value))


def webhook_view(webhook: Webhook) -> dict[str, Any]:
    return {
        "id": webhook.id,
        "url": webhook.url,
        "events": list(webhook.events),
        "description": webhook.description,
        "active": webhook.active,
        "secret": MASK,
        "last_status": webhook.last_status,
        "last_error": webhook.last_error or None,
        "last_attempt_at": webhook.last_attempt_at or None,
        "failures": webhook.failures,
        "delivered": webhook.delivered,
        "pending": webhook.pending,
        "created_at": webhook.created_at,
    }


# -- the worker --------------------------------------------------------------------


class WebhookWorker:
    def __init__(
        self,
        store: Store,
        settings: Settings,
        client: httpx.AsyncClient,
        events: EventBus,
        event_format: EventFormat,
    ) -> None:
        self._store = store
        self._settings = settings
        self._client = client
        self._events = events
        self._format = event_format
        self._in_flight: set[asyncio.Task[None]] = set()
        self._slot_freed = asyncio.Event()

    async def run(self) -> None:
        try:
            await run_passes(self.run_once, self._idle, "webhooks.pass_failed")
        finally:
            unfinished = list(self._in_flight)
            for task in unfinished:
                task.cancel()
            await asyncio.gather(*unfinished, return_exceptions=True)

    async def run_once(self) -> bool:
        """Queue deliveries for new events and start the due ones; True when a full
        batch of events was read, so more may be waiting."""
        settings = self._settings
        now = time.time()
        read = await self._store.fan_out_webhooks(now, settings.webhook_batch_size)
        free = settings.webhook_concurrency - len(self._in_flight)
        if free > 0:
            claimed = await self._store.claim_webhook_deliveries(
                now, settings.webhook_lease_seconds, min(free, settings.webhook_batch_size)
            )
            for delivery in claimed:
                task = asyncio.create_task(self._deliver(delivery))
                self._in_flight.add(task)
                task.add_done_callback(self._finished)
        return read >= settings.webhook_batch_size

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._slot_freed.set()

    async def _idle(self) -> None:
        """Until this process commits events, a delivery frees its slot, or the poll
        interval passes (for retries coming due and other processes' events)."""
        waits = [
            asyncio.ensure_future(self._events.wait(self._settings.poll_interval)),
            asyncio.ensure_future(self._slot_freed.wait()),
        ]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
            self._slot_freed.clear()

    async def _deliver(self, delivery: WebhookDelivery) -> None:
        try:
            attempt = await self._attempt(delivery)
            await self._store.record_webhook_attempt(attempt)
        except Exception:
            # Unrecorded, the claim's lease runs out and the delivery is tried again.
            _log.exception(
                "webhook.unrecorded",
                webhook_id=delivery.webhook_id,
                event_id=delivery.event.id,
            )
            return
        fields = {
            "webhook_id": delivery.webhook_id,
            "event_id": delivery.event.id,
            "event_type": delivery.event.event,
            "http_status": attempt.http_status,
            "attempts": delivery.attempts,
        }
        if attempt.outcome is WebhookOutcome.DELIVERED:
            _log.info("webhook.delivered", **fields)
        elif attempt.outcome is WebhookOutcome.RETRY:
            _log.warning(
                "webhook.retry", **fields, error=attempt.error, retry_at=round(attempt.retry_at, 3)
            )
        elif attempt.outcome is WebhookOutcome.GAVE_UP:
            _log.warning("webhook.gave_up", **fields, error=attempt.error)
        else:
            _log.warning("webhook.disabled", **fields, error=attempt.error)

    async def _attempt(self, delivery: WebhookDelivery) -> WebhookAttempt:
        """POST the delivery once and conclude what to record."""
        body = payload(delivery.event, self._format)
        now = time.time()
        headers = signed_headers(delivery.secret, delivery.event, body, now)
        status: int | None = None
        asked: float | None = None
        try:
            # One deadline for the whole exchange, well inside the claim's lease.
            async with (
                asyncio.timeout(self._settings.webhook_timeout),
                self._client.stream("POST", delivery.url, content=body, headers=headers) as answer,
            ):
                status = answer.status_code
                if answer.is_success:
                    return self._concluded(delivery, WebhookOutcome.DELIVERED, status)
                if status == 410:
                    error = "HTTP 410: the receiver asked for no more deliveries"
                    return self._concluded(delivery, WebhookOutcome.GONE, status, error)
                snippet = await _snippet(answer)
                error = f"HTTP {status}: {snippet}" if snippet else f"HTTP {status}"
                asked = wire.retry_after(answer.headers, now)
        except TimeoutError:
            error = f"no answer within {self._settings.webhook_timeout:g} s"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        # The URL may carry the receiver's own token in its path or query.
        error = redact(error, [delivery.url], limit=500)
        settings = self._settings
        delay = retry_delay(
            delivery.attempts, settings.webhook_backoff_base, settings.webhook_backoff_cap, asked
        )
        if now + delay > delivery.first_at + settings.webhook_give_up:
            return self._concluded(delivery, WebhookOutcome.GAVE_UP, status, error)
        return WebhookAttempt(
            delivery.webhook_id,
            delivery.event.id,
            WebhookOutcome.RETRY,
            status,
            error,
            retry_at=now + delay,
        )

    @staticmethod
    def _concluded(
        delivery: WebhookDelivery, outcome: WebhookOutcome, status: int | None, error: str = ""
    ) -> WebhookAttempt:
        return WebhookAttempt(delivery.webhook_id, delivery.event.id, outcome, status, error)


async def _snippet(answer: httpx.Response) -> str:
    """The start of an error answer, for `last_error`; the rest is never read."""
    head = b""
    async for chunk in answer.aiter_bytes():
        head += chunk
        if len(head) >= _ERROR_SNIPPET:
            break
    return " ".join(head[:_ERROR_SNIPPET].decode(errors="replace").split())
