"""Outbound event webhooks: subscriptions from the API, and their worker.

Nothing is added to the write path of the events themselves: the worker reads the
events table behind each webhook's cursor and queues one delivery row per wanted
event in a single transaction, so a burst of DLRs costs one extra write per pass,
not per event. Delivering, signing and retrying are `service.delivery`'s.

Delivery outcomes are logged (`webhook.delivered`, `.retry`, `.gave_up`,
`.disabled`) but never stored as events: stored, they would become deliveries of
their own.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Sequence
from typing import Any

import httpx

from service import bounds
from service.accounts import MASK
from service.delivery import (
    DeliveryWorker,
    new_secret,
    post_signed,
    standard_headers,
)
from service.errors import ValidationFailed
from service.events import EventBus, EventFormat
from service.model import (
    Event,
    NewWebhook,
    Webhook,
    WebhookAttempt,
    WebhookDelivery,
)
from service.settings import Settings
from service.store import Store
from service.validation import http_url, json_object

_FIELDS = {"url", "events", "description"}
_FILTER = re.compile(r"\*|[a-z0-9_]+(\.[a-z0-9_]+)*(\.\*)?")
_MAX_FILTERS = 50


def payload(event: Event, event_format: EventFormat) -> bytes:
    """The body: the event exactly as its log line and the events API show it."""
    document = {"type": event.event, "timestamp": event.ts, "data": event_format.line(event)}
    return json.dumps(document, separators=(",", ":")).encode()


def signed_headers(secret: str, event: Event, body: bytes, now: float) -> dict[str, str]:
    return standard_headers(secret, f"evt_{event.id}", body, now)


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


class WebhookWorker(DeliveryWorker[WebhookDelivery, WebhookAttempt]):
    def __init__(
        self,
        store: Store,
        settings: Settings,
        client: httpx.AsyncClient,
        events: EventBus,
        event_format: EventFormat,
    ) -> None:
        super().__init__(settings, events, "webhooks")
        self._store = store
        self._client = client
        self._format = event_format

    async def _prepare(self, now: float) -> bool:
        """Queue deliveries for new events."""
        batch = self._settings.webhook_batch_size
        return await self._store.fan_out_webhooks(now, batch) >= batch

    async def _claim(self, now: float, limit: int) -> Sequence[WebhookDelivery]:
        return await self._store.claim_webhook_deliveries(
            now, self._settings.webhook_lease_seconds, limit
        )

    async def _record(self, attempt: WebhookAttempt) -> None:
        await self._store.record_webhook_attempt(attempt)

    def _fields(self, delivery: WebhookDelivery) -> dict[str, Any]:
        return {
            "webhook_id": delivery.webhook_id,
            "event_id": delivery.event.id,
            "event_type": delivery.event.event,
            "attempts": delivery.attempts,
        }

    async def _attempt(self, delivery: WebhookDelivery) -> WebhookAttempt:
        body = payload(delivery.event, self._format)
        headers = signed_headers(delivery.secret, delivery.event, body, time.time())
        answer = await post_signed(
            self._client, delivery.url, body, headers, self._settings.webhook_timeout
        )
        outcome, when = self._settle(answer, delivery.attempts, delivery.first_at)
        return WebhookAttempt(
            delivery.webhook_id,
            delivery.event.id,
            outcome,
            answer.http_status,
            answer.error,
            retry_at=when,
        )
