"""Pure ASGI middleware: bearer-token auth for /v1 and /metrics, and request body limits.

Both act before the application reads the body, so an unauthenticated or oversized
request costs nothing more than its headers.
"""

from __future__ import annotations

import hmac
import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import PayloadTooLarge, SmsgwError, Unauthorized


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
        # Compare against every token so the time taken does not reveal which matched.
        matched = False
        for known in self._tokens:
            matched |= hmac.compare_digest(token.strip(), known)
        return matched


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
        if declared is not None and declared.isdigit() and int(declared) > limit:
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
