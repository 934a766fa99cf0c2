"""Signed HTTP deliveries with retries, shared by the event webhooks (webhooks.py)
and the per-message status callbacks (status_callbacks.py).

Signed as the Standard Webhooks spec describes. Deliveries are rows in the store, so
they survive a restart; a claim is a lease, so two processes never send one delivery
at once and a crashed process's claim runs out into a retry. Receivers get each
delivery at least once and deduplicate on the `webhook-id` header, which stays the
same across retries.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import random
import secrets
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import httpx
import structlog

from handlers import wire
from service.events import EventBus
from service.model import WebhookOutcome
from service.redact import redact
from service.settings import Settings
from service.worker import run_passes

_log = structlog.get_logger("smsgw.delivery")
D = TypeVar("D")
A = TypeVar("A", bound="Attempt")

SECRET_PREFIX = "whsec_"  # noqa: S105 -- the format's prefix, not a secret
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


def standard_headers(secret: str, msg_id: str, body: bytes, now: float) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt to deliver `body`."""
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


# -- delivering ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answer:
    """What one POST came to: DELIVERED (2xx), GONE (410) or RETRY (anything else,
    or no answer), with the receiver's status and, when it failed, why."""

    outcome: WebhookOutcome
    http_status: int | None
    error: str = ""
    asked: float | None = None
    """Seconds the receiver asked to wait (Retry-After)."""


async def post_signed(
    client: httpx.AsyncClient, url: str, body: bytes, headers: dict[str, str], deadline: float
) -> Answer:
    """POST `body` once; an error never carries the URL, which may hold the
    receiver's own token in its path or query."""
    now = time.time()
    status: int | None = None
    asked: float | None = None
    try:
        # One deadline for the whole exchange, well inside the claim's lease.
        async with (
            asyncio.timeout(deadline),
            client.stream("POST", url, content=body, headers=headers) as answer,
        ):
            status = answer.status_code
            if answer.is_success:
                return Answer(WebhookOutcome.DELIVERED, status)
            if status == 410:
                error = "HTTP 410: the receiver asked for no more deliveries"
                return Answer(WebhookOutcome.GONE, status, error)
            snippet = await _snippet(answer)
            error = f"HTTP {status}: {snippet}" if snippet else f"HTTP {status}"
            asked = wire.retry_after(answer.headers, now)
    except TimeoutError:
        error = f"no answer within {deadline:g} s"
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return Answer(WebhookOutcome.RETRY, status, redact(error, [url], limit=500), asked)


def retry_at(settings: Settings, attempts: int, first_at: float, asked: float | None) -> float:
    """When to try a failed delivery again; 0 when it is past `webhooks.give_up`."""
    now = time.time()
    delay = retry_delay(
        attempts, settings.webhook_backoff_base, settings.webhook_backoff_cap, asked
    )
    return 0.0 if now + delay > first_at + settings.webhook_give_up else now + delay


class Attempt(Protocol):
    """What a subclass records of one POST."""

    @property
    def outcome(self) -> WebhookOutcome: ...
    @property
    def http_status(self) -> int | None: ...
    @property
    def error(self) -> str: ...
    @property
    def retry_at(self) -> float: ...


class DeliveryWorker(ABC, Generic[D, A]):
    """Claims due deliveries and POSTs each in a task of its own, at most
    `webhooks.concurrency` at once; what a delivery is, and how its attempt is made
    and recorded, is the subclass's. `name` prefixes its log lines."""

    def __init__(self, settings: Settings, events: EventBus, name: str) -> None:
        self._settings = settings
        self._events = events
        self._name = name
        self._in_flight: set[asyncio.Task[None]] = set()
        self._slot_freed = asyncio.Event()

    async def run(self) -> None:
        try:
            await run_passes(self.run_once, self._idle, f"{self._name}.pass_failed")
        finally:
            unfinished = list(self._in_flight)
            for task in unfinished:
                task.cancel()
            await asyncio.gather(*unfinished, return_exceptions=True)

    async def run_once(self) -> bool:
        """Prepare and start the due deliveries; True when more work may be waiting."""
        settings = self._settings
        now = time.time()
        more = await self._prepare(now)
        free = settings.webhook_concurrency - len(self._in_flight)
        if free > 0:
            for delivery in await self._claim(now, min(free, settings.webhook_batch_size)):
                task = asyncio.create_task(self._deliver(delivery))
                self._in_flight.add(task)
                task.add_done_callback(self._finished)
        return more

    async def _prepare(self, now: float) -> bool:
        """Work before claiming; True when a full batch was done, so more may wait."""
        return False

    @abstractmethod
    async def _claim(self, now: float, limit: int) -> Sequence[D]: ...

    @abstractmethod
    async def _attempt(self, delivery: D) -> A:
        """POST the delivery once and conclude what to record."""

    @abstractmethod
    async def _record(self, attempt: A) -> None: ...

    @abstractmethod
    def _fields(self, delivery: D) -> dict[str, Any]:
        """What names the delivery in log lines."""

    async def _deliver(self, delivery: D) -> None:
        try:
            attempt = await self._attempt(delivery)
            await self._record(attempt)
        except Exception:
            # Unrecorded, the claim's lease runs out and the delivery is tried again.
            _log.exception(f"{self._name}.unrecorded", **self._fields(delivery))
            return
        log_outcome(
            self._name,
            attempt.outcome,
            attempt.error,
            attempt.retry_at,
            {**self._fields(delivery), "http_status": attempt.http_status},
        )

    def _settle(
        self, answer: Answer, attempts: int, first_at: float
    ) -> tuple[WebhookOutcome, float]:
        """The outcome to record, and for a retry when it is due: a failed delivery
        past `webhooks.give_up` is given up."""
        if answer.outcome is not WebhookOutcome.RETRY:
            return answer.outcome, 0.0
        when = retry_at(self._settings, attempts, first_at, answer.asked)
        return (WebhookOutcome.RETRY, when) if when else (WebhookOutcome.GAVE_UP, 0.0)

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


def log_outcome(
    kind: str, outcome: WebhookOutcome, error: str, when: float, fields: dict[str, Any]
) -> None:
    """`<kind>.delivered`, `.retry`, `.gave_up` or `.disabled`."""
    if outcome is WebhookOutcome.DELIVERED:
        _log.info(f"{kind}.delivered", **fields)
    elif outcome is WebhookOutcome.RETRY:
        _log.warning(f"{kind}.retry", **fields, error=error, retry_at=round(when, 3))
    elif outcome is WebhookOutcome.GAVE_UP:
        _log.warning(f"{kind}.gave_up", **fields, error=error)
    else:
        _log.warning(f"{kind}.disabled", **fields, error=error)


async def _snippet(answer: httpx.Response) -> str:
    """The start of an error answer, for `last_error`; the rest is never read."""
    head = b""
    async for chunk in answer.aiter_bytes():
        head += chunk
        if len(head) >= _ERROR_SNIPPET:
            break
    return " ".join(head[:_ERROR_SNIPPET].decode(errors="replace").split())
