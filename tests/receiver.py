"""A receiver of outbound deliveries (event webhooks, status callbacks) on loopback:
it answers as planned and records every call."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from tests.conftest import eventually

# Small enough that retries happen within a test, and a lost lease runs out quickly.
QUICK = {
    "webhook_backoff_base": 0.05,
    "webhook_backoff_cap": 0.2,
    "webhook_timeout": 1.0,
    "webhook_lease_seconds": 2.0,
}


@dataclass
class Call:
    path: str
    body: bytes
    headers: dict[str, str]
    at: float
    """time.monotonic() on arrival."""
    status: int
    """What the receiver answered."""

    @property
    def payload(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self.body)
        return document

    @property
    def event(self) -> tuple[int, str]:
        return self.payload["data"]["event_id"], self.payload["type"]


@dataclass
class Receiver:
    """A webhook endpoint: answers `plan` in order, then `then`, and records every call."""

    url: str = ""
    plan: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    then: int = 200
    calls: list[Call] = field(default_factory=list)

    async def endpoint(self, request: Request) -> Response:
        status, headers = self.plan.pop(0) if self.plan else (self.then, {})
        body = await request.body()
        self.calls.append(
            Call(request.url.path, body, dict(request.headers), time.monotonic(), status)
        )
        return PlainTextResponse(
            "ok" if status < 300 else "planned failure", status_code=status, headers=headers
        )

    def at(self, path: str) -> list[Call]:
        return [c for c in self.calls if c.path == path]

    async def received(self, count: int) -> list[Call]:
        async def enough() -> list[Call]:
            return list(self.calls) if len(self.calls) >= count else []

        return await eventually(enough)
