"""Per-message status callbacks: each status change a message asked to be told of,
POSTed to its callback URL.

The deliveries are queued by the store in the transaction of the status change
(`store/status_callbacks.py`), in order per message; this worker claims them, signs
each with the client's webhook secret (an admin send's with `[status_callbacks]
secret`), and records every answer, which `GET /v1/messages/{id}` shows. Sending,
signing and retrying are `service.delivery`'s, shared with the event webhooks.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import httpx

from service.callback_records import CallbackAttempt, CallbackDue, CallbackRecord
from service.clock import iso_of
from service.delivery import DeliveryWorker, post_signed, standard_headers
from service.events import EventBus
from service.model import WebhookOutcome
from service.settings import Settings
from service.store import Store

_UNSIGNABLE = "nothing to sign with: the message's client is gone"


class StatusCallbackWorker(DeliveryWorker[CallbackDue, CallbackAttempt]):
    def __init__(
        self, store: Store, settings: Settings, client: httpx.AsyncClient, events: EventBus
    ) -> None:
        super().__init__(settings, events, "status_callback")
        self._store = store
        self._client = client

    async def _claim(self, now: float, limit: int) -> Sequence[CallbackDue]:
        settings = self._settings
        return await self._store.claim_status_callbacks(
            now, settings.webhook_lease_seconds, limit, settings.status_callback_secret
        )

    async def _record(self, attempt: CallbackAttempt) -> None:
        await self._store.record_status_callback(attempt)

    def _fields(self, delivery: CallbackDue) -> dict[str, Any]:
        return {
            "message_id": delivery.message_id,
            "webhook_id": delivery.webhook_id,
            "attempts": delivery.attempts,
        }

    async def _attempt(self, delivery: CallbackDue) -> CallbackAttempt:
        if not delivery.secret:
            return CallbackAttempt(
                delivery.seq, delivery.message_id, WebhookOutcome.GAVE_UP, None, _UNSIGNABLE
            )
        headers = standard_headers(delivery.secret, delivery.webhook_id, delivery.body, time.time())
        answer = await post_signed(
            self._client, delivery.url, delivery.body, headers, self._settings.webhook_timeout
        )
        outcome, when = self._settle(answer, delivery.attempts, delivery.first_at)
        return CallbackAttempt(
            delivery.seq,
            delivery.message_id,
            outcome,
            answer.http_status,
            answer.error,
            retry_at=when,
        )


def callbacks_view(records: Sequence[CallbackRecord]) -> list[dict[str, Any]]:
    """A message's callbacks as its views show them: per status change, its state and
    every answer. Never a secret or a signature."""
    return [
        {
            "webhook_id": r.webhook_id,
            "status": r.status,
            "state": r.state,
            "next_attempt_at": iso_of(r.next_attempt_at) if r.next_attempt_at else None,
            "attempts": [
                {
                    "at": t.at,
                    "http_status": t.http_status,
                    "error": t.error or None,
                    "outcome": t.outcome,
                }
                for t in r.tries
            ],
        }
        for r in records
    ]
