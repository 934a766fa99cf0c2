"""Pure ASGI middleware: bearer-token auth for /v1 and /metrics, and request body limits.

Both act before the application reads the body, so an unauthenticated or oversized
request costs nothing more than its headers.
"""

from __future__ import annotations

import hmac
import json
import math
import time
from collections import OrderedDict
from collections.abc import Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import (
    PayloadTooLarge,
    SmsgwError,
    TooManyRequests,
    Unauthorized,
    Unavailable,
)
from service.parsing import int_of, is_digits


async def send_error(
    send: Send, error: SmsgwError, headers: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    body = json.dumps(error.as_body()).encode()
    await send(
        {
            "type": "http.response.start",
            "status": error.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def is_known_token(given: bytes, tokens: Sequence[bytes]) -> bool:
    """Compares against every token so the time taken does not reveal which matched;
    the API and the console sign-in both check tokens through here."""
    matched = False
    for known in tokens:
        matched |= hmac.compare_digest(given, known)
    return matched


class BearerAuth:
    """Requires `Authorization: Bearer <token>` on every path under `prefixes`."""

    def __init__(
        self,
        app: ASGIApp,
        tokens: tuple[str, ...],
        prefixes: tuple[str, ...] = ("/v1/", "/metrics"),
    ) -> None:
        self.app = app
        self._tokens = [t.encode() for t in tokens]
        self._prefixes = prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["path"].startswith(self._prefixes)
            and not self._authorized(scope)
        ):
            await send_error(
                send,
                Unauthorized("a valid bearer token is required"),
                ((b"www-authenticate", b"Bearer"),),
            )
            return
        await self.app(scope, receive, send)

    def _authorized(self, scope: Scope) -> bool:
        header = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, token = header.partition(b" ")
        if scheme.lower() != b"bearer" or not token:
            return False
        return is_known_token(token.strip(), self._tokens)


def _declares_more(content_length: bytes, limit: int) -> bool:
    """A Content-Length past `limit`; one of more digits than int() takes is past it too."""
    text = content_length.decode("latin-1").strip()
    size = int_of(text)
    return size > limit if size is not None else is_digits(text)


class BodyLimit:
    """413 for bodies over the limit of the first matching path prefix."""

    def __init__(self, app: ASGIApp, limits: list[tuple[str, int]], default: int) -> None:
        self.app = app
        self._limits = limits
        self._default = default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = next(
            (n for prefix, n in self._limits if scope["path"].startswith(prefix)), self._default
        )
        too_large = PayloadTooLarge(f"the body exceeds {limit} bytes")
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and _declares_more(declared, limit):
            await send_error(send, too_large)
            return
        received = 0
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            response_started |= message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if not response_started:
                await send_error(send, too_large)


class _BodyTooLarge(Exception):
    pass


class LoadShed:
    """503 with Retry-After once `limit` requests are in flight.

    Under overload a queue of waiting requests only grows memory and latency until
    everything times out; refusing early tells providers to retry later instead, and
    they do: every callback is retried on a 5xx.
    """

    def __init__(self, app: ASGIApp, limit: int, retry_after: int = 1) -> None:
        self.app = app
        self._limit = limit
        self._retry_after = str(retry_after).encode()
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self._limit:
            await send_error(
                send,
                Unavailable("too many requests in flight; retry later", code="overloaded"),
                ((b"retry-after", self._retry_after),),
            )
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


class AuthThrottle:
    """429 for a client address that failed authentication `limit` times in `window`
    seconds: API tokens and callback keys cannot be guessed at full speed.

    It counts the 401 and 403 answers of everything behind it, so API tokens,
    callback keys and provider signatures are all covered by one rule. Addresses
    are the peer's own (behind a proxy, the proxy's): the table holds at most
    `max_clients` of them, dropping the oldest first.
    """

    def __init__(self, app: ASGIApp, limit: int, window: float, max_clients: int = 10_000) -> None:
        self.app = app
        self._limit = limit
        self._window = window
        self._max_clients = max_clients
        self._failures: OrderedDict[str, tuple[float, int]] = OrderedDict()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = (scope.get("client") or ("", 0))[0]
        now = time.monotonic()
        started, count = self._failures.get(client, (now, 0))
        if now - started >= self._window:
            self._failures.pop(client, None)
            started, count = now, 0
        if count >= self._limit:
            wait = max(1, math.ceil(self._window - (now - started)))
            await send_error(
                send,
                TooManyRequests("too many failed authentications; wait and retry"),
                ((b"retry-after", str(wait).encode()),),
            )
            return

        async def watching_send(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] in (401, 403):
                self._record(client, now)
            await send(message)

        await self.app(scope, receive, watching_send)

    def _record(self, client: str, now: float) -> None:
        started, count = self._failures.pop(client, (now, 0))
        self._failures[client] = (started, count + 1)
        while len(self._failures) > self._max_clients:
            self._failures.popitem(last=False)
