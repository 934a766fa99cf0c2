"""Pure ASGI middleware: bearer-token auth for /v1 and /metrics, request body limits,
and load shedding.

They act before the application reads the body, so an unauthenticated or oversized
request costs nothing more than its headers.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import (
    Forbidden,
    PayloadTooLarge,
    SmsgwError,
    Unauthorized,
    Unavailable,
    Unparseable,
)
from service.keyring import KeyResolver, digest
from service.parsing import int_of, is_digits
from service.principals import ADMIN_PRINCIPAL, PRINCIPAL, Principal, required_scope
from service.ratelimit import API_AUTH, FailedAuthentications


async def send_error(
    send: Send, error: SmsgwError, headers: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    body = json.dumps(error.as_body()).encode()
    own = tuple((k.encode(), v.encode()) for k, v in error.headers().items())
    await send(
        {
            "type": "http.response.start",
            "status": error.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *own,
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def client_address(scope: Scope) -> str:
    return str((scope.get("client") or ("", 0))[0])


def matching_token(given: bytes, tokens: Sequence[bytes]) -> int | None:
    """The index of the token given. Compares against every token so the time taken
    does not reveal which matched; the API and the console sign-in both check tokens
    through here."""
    found = None
    for index, known in enumerate(tokens):
        if hmac.compare_digest(given, known):
            found = index
    return found


class BearerAuth:
    """Requires `Authorization: Bearer <token>` on every path under `prefixes`; a wrong
    or missing token is counted in `failures`, which answers 429 past its limit.

    A token of `tokens` (SMSGW_API_TOKENS) is an admin's; any other is looked up as a
    client's key (`keys`). The request's `Principal` goes into the ASGI scope under
    `PRINCIPAL`, and a principal without the scope the request needs gets 403.
    """

    def __init__(
        self,
        app: ASGIApp,
        tokens: tuple[str, ...],
        failures: FailedAuthentications,
        keys: KeyResolver | None = None,
        prefixes: tuple[str, ...] = ("/v1/", "/metrics"),
    ) -> None:
        self.app = app
        self._tokens = [t.encode() for t in tokens]
        self._failures = failures
        self._keys = keys or KeyResolver()
        self._prefixes = prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self._prefixes):
            await self.app(scope, receive, send)
            return
        principal = await self._principal(scope)
        if principal is None:
            refusal = self._failures.refusal(
                client_address(scope),
                API_AUTH,
                Unauthorized("a valid bearer token is required"),
            )
            await send_error(send, refusal, ((b"www-authenticate", b"Bearer"),))
            return
        needed = required_scope(scope["method"], scope["path"])
        if needed not in principal.scopes:
            await send_error(
                send,
                Forbidden(
                    f"this key lacks the {needed!r} scope this request needs",
                    code="insufficient_scope",
                ),
            )
            return
        scope[PRINCIPAL] = principal
        await self.app(scope, receive, send)

    async def _principal(self, scope: Scope) -> Principal | None:
        header = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, token = header.partition(b" ")
        token = token.strip()
        if scheme.lower() != b"bearer" or not token:
            return None
        if matching_token(token, self._tokens) is not None:
            return ADMIN_PRINCIPAL
        return await self._keys.resolve(digest(token))


def declares_more(content_length: bytes, limit: int) -> bool:
    """A Content-Length past `limit`; one of more digits than int() takes is past it too."""
    text = content_length.decode("latin-1").strip()
    size = int_of(text)
    return size > limit if size is not None else is_digits(text)


def holds_nul(scope: Scope) -> bool:
    """A NUL in the path or query: no route has a use for one, and PostgreSQL cannot
    store or compare it in text."""
    query: bytes = scope.get("query_string", b"")
    return "\x00" in scope["path"] or b"%00" in query or b"\x00" in query


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
        if holds_nul(scope):
            await send_error(send, Unparseable("the URL holds a NUL character (U+0000)"))
            return
        too_large = PayloadTooLarge(f"the body exceeds {limit} bytes")
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declares_more(declared, limit):
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
