"""What every fake provider does alike, whatever its wire format.

A fake answers sends at once but pushes its reports afterwards, as background tasks,
through one httpx client that lives as long as the app; it can hold a send's answer
back to make a client time out. Each fake keeps its own endpoints, records and wire
shapes; this base keeps only that machinery, so the fakes cannot drift apart in it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import AsyncIterator, Coroutine, Sequence
from contextlib import asynccontextmanager, suppress
from itertools import permutations
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class FakeServer:
    """A provider's API on loopback: `async with serve(fake.app) as base_url: ...`.

    - `sent`: every accepted send request's fields, in order (each fake says which).
    - `requests_seen`: every send request that arrived, failed and refused ones too.
    - `dlr_url` / `inbound_url`: where reports and inbound messages go (None: nowhere).
    - `dlr_before_response`: push a send's reports, and wait for their answers, before
      answering the send (the report racing ahead of the ID).
    - `duplicates`: extra copies of each report pushed (0: each once).
    - `dlr_acks`: the HTTP status our callback answered to each report push, in push
      order; 0 when it could not be reached.
    - `hang_next`: how many upcoming accepted sends are answered only after
      `hang_seconds` (default 5.0), so that a client timeout leaves the outcome unknown;
      `release_hung()` answers those hanging now at once. The server waits for hung
      requests when it stops, so release them before leaving `serve`.

    `drain()` waits for every background push.
    """

    def __init__(self, routes: Sequence[BaseRoute]) -> None:
        self.sent: list[dict[str, Any]] = []
        self.requests_seen = 0
        self.dlr_url: str | None = None
        self.inbound_url: str | None = None
        self.dlr_before_response = False
        self.duplicates = 0
        self.dlr_acks: list[int] = []
        self.hang_next = 0
        self.hang_seconds = 5.0
        self.echo: list[str] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None
        self._release = asyncio.Event()
        self.app = Starlette(
            routes=list(routes),
            lifespan=self._lifespan,
            middleware=[Middleware(Echo, fake=self)],
        )

    async def drain(self) -> None:
        """Wait until every background push has been answered."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks))

    def release_hung(self) -> None:
        """Answer the send requests hanging now; later ones hang as usual."""
        self._release.set()
        self._release = asyncio.Event()

    async def _answer_after(self, pushes: Coroutine[Any, Any, None], *, race: bool = False) -> None:
        """Before a send is answered: push its reports first when asked (or `race`),
        else in the background; then hold the answer back if asked to hang."""
        if self.dlr_before_response or race:
            await pushes
        else:
            self._spawn(pushes)
        await self._hang_if_asked()

    async def _hang_if_asked(self) -> None:
        if self.hang_next > 0:
            self.hang_next -= 1
            with suppress(TimeoutError):
                await asyncio.wait_for(self._release.wait(), self.hang_seconds)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            raise RuntimeError("serve fake.app (its lifespan opens the HTTP client) first")
        return self._client

    async def _deliver(self, url: str, fmt: str, fields: dict[str, Any]) -> int:
        """Call back `url` with `fields` as "json", "form" or "get"; 0 when unreachable."""
        client = self._http
        flat = {k: str(v) for k, v in fields.items()}
        try:
            if fmt == "json":
                response = await client.post(url, json=fields)
            elif fmt == "form":
                response = await client.post(url, data=flat)
            elif fmt == "get":
                # Appended to the callback URL's own query, which carries its secret.
                response = await client.get(httpx.URL(url).copy_merge_params(flat))
            else:
                raise ValueError(f"unknown callback format {fmt!r}")
        except httpx.HTTPError:
            return 0
        return response.status_code

    @asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        async with httpx.AsyncClient(timeout=10) as client:
            self._client = client
            try:
                yield
            finally:
                self.release_hung()
                await self.drain()
                self._client = None


async def query_and_form(request: Request) -> dict[str, str]:
    """Query parameters, with a form body's fields over them, as servlet-style APIs
    read a request whichever way it came."""
    fields = dict(request.query_params)
    if request.method == "POST":
        body = (await request.body()).decode("utf-8", errors="replace")
        fields.update(parse_qsl(body, keep_blank_values=True))
    return fields


def echo_forms(values: Sequence[str]) -> list[str]:
    """Each value plain, JSON-escaped (also with `\\/`), URL-encoded (with `%20` or `+`,
    upper- or lower-case hex) and in base64, and each pair as HTTP Basic `a:b` does."""
    forms: list[str] = []
    for value in values:
        escaped = json.dumps(value)[1:-1]
        encoded = quote(value, safe="")
        forms += [
            value,
            escaped,
            escaped.replace("/", "\\/"),
            encoded,
            quote_plus(value),
            re.sub("%[0-9A-F]{2}", lambda m: m[0].lower(), encoded),
            base64.b64encode(value.encode()).decode(),
        ]
    forms += [base64.b64encode(f"{a}:{b}".encode()).decode() for a, b in permutations(values, 2)]
    return forms


class Echo:
    """The fakes' echo mode, as ASGI middleware: while `fake.echo` is set, each answer
    gets an `X-Echo-<n>` header per form, the forms appended to every text of a JSON
    body that has a space (its messages, not its codes) and under an `echo` key of a
    JSON object (written with `\\/` for `/`, as PHP does), or appended to a body of any
    other kind."""

    def __init__(self, app: ASGIApp, fake: FakeServer) -> None:
        self.app = app
        self.fake = fake

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.fake.echo:
            await self.app(scope, receive, send)
            return
        forms = echo_forms(self.fake.echo)
        start: Message = {}
        chunks: list[bytes] = []

        async def echoing(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            body = _echo_body(b"".join(chunks), forms)
            headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
            headers += [(f"x-echo-{n}".encode(), f.encode()) for n, f in enumerate(forms)]
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, echoing)


def _echo_body(body: bytes, forms: list[str]) -> bytes:
    text = " echo: " + " ".join(forms)
    try:
        document = json.loads(body)
    except ValueError:
        document = None
    if not isinstance(document, dict | list):  # text, or a bare number such as "1702"
        return body + text.encode()

    def echoed(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: echoed(v) for k, v in value.items()}
        if isinstance(value, list):
            return [echoed(v) for v in value]
        return value + text if isinstance(value, str) and " " in value else value

    document = echoed(document)
    if isinstance(document, dict):
        document["echo"] = text
    return json.dumps(document).replace("/", "\\/").encode()
