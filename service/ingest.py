"""The delivery-report door: /callbacks/{account}/dlr, served as lean as it can be.

Pure ASGI, in front of the Starlette app, doing only what a report needs before its
2xx: refuse what is too big, too many or malformed, find the account in the in-memory
directory, check the URL's key and the provider's signature, parse the body into
normalized reports (a malformed one gets its 4xx here, and nothing is stored), and
append it to the callback inbox. The 2xx follows the commit of the group holding it;
the applier (`service.callback_inbox`) applies it moments later. No log line per
request: the stored callback and the events its reports cause are the record.
"""

from __future__ import annotations

import re
import time
from urllib.parse import parse_qsl, urlencode

from starlette.types import ASGIApp, Receive, Scope, Send

from handlers import handler_for
from handlers.base import CallbackRequest
from service import bounds, callback_auth, reconcile
from service.accounts import redactor_for
from service.errors import MethodNotAllowed, PayloadTooLarge, SmsgwError, Unavailable, Unparseable
from service.metrics import Metrics
from service.middleware import client_address, declares_more, holds_nul, send_error
from service.model import Account, InboxEntry, KeyedReport, RawCallback
from service.redact import Redactor
from service.runtime import Runtime

_DLR_PATH = re.compile(r"/callbacks/([^/]+)/dlr")
_METHODS = ("GET", "POST")
_BUSY_RETRY_AFTER = 5
_JSON = [(b"content-type", b"application/json")]


class DlrIngest:
    """Serves delivery-report callbacks itself; every other request goes to `app`.

    The outermost middleware of the app, so that a report passes nothing else.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics, max_in_flight: int) -> None:
        self.app = app
        self._metrics = metrics
        self._max_in_flight = max_in_flight
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = _DLR_PATH.fullmatch(scope["path"]) if scope["type"] == "http" else None
        if match is None:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self._max_in_flight:
            busy = Unavailable("too many requests in flight; retry later", code="overloaded")
            await self._answer_error(send, busy)
            return
        self.in_flight += 1
        try:
            # Starlette put itself in the scope before any middleware runs.
            runtime: Runtime = scope["app"].state.runtime
            count = await _ingest(runtime, scope, receive, match[1])
        except SmsgwError as error:
            await self._answer_error(send, error)
        else:
            body = b'{"ok":true,"stored":%d}' % count
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [*_JSON, (b"content-length", b"%d" % len(body))],
                }
            )
            await send({"type": "http.response.body", "body": body})
            self._metrics.callback_answered("dlr", 200)
        finally:
            self.in_flight -= 1

    async def _answer_error(self, send: Send, error: SmsgwError) -> None:
        await send_error(send, error)
        self._metrics.callback_answered("dlr", error.status)


async def _ingest(rt: Runtime, scope: Scope, receive: Receive, account_name: str) -> int:
    """Stores the callback's reports; how many there were."""
    method = scope["method"]
    if method not in _METHODS:
        raise MethodNotAllowed(f"{method} is not allowed here", allow=", ".join(_METHODS))
    if holds_nul(scope):
        raise Unparseable("the URL holds a NUL character (U+0000)")
    if rt.applier.depth >= rt.settings.inbox_max_depth:
        raise Unavailable(
            "too many reports wait to be applied; retry later",
            code="inbox_full",
            retry_after=_BUSY_RETRY_AFTER,
        )
    headers: dict[str, str] = {}
    for name, value in scope["headers"]:
        headers.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
    limit = rt.settings.callback_max_body
    if declares_more(headers.get("content-length", "").encode("latin-1"), limit):
        raise PayloadTooLarge(f"the body exceeds {limit} bytes")
    raw_query: str = scope.get("query_string", b"").decode("latin-1")
    query = parse_qsl(raw_query, keep_blank_values=True)
    account = callback_auth.authenticate(
        await rt.directory.get(account_name), query, rt.auth_failures, client_address(scope)
    )
    body = await _read_body(receive, limit)
    callback = callback_auth.callback_request(
        account,
        method,
        rt.settings.base_url + scope["path"] + (f"?{raw_query}" if raw_query else ""),
        query,
        headers,
        body,
    )
    handler = handler_for(account.provider)
    reports = [
        KeyedReport(
            checked,
            reconcile.match_key(checked.request_id, checked.recipient, handler.shares_request_ids),
        )
        for checked in map(bounds.checked_report, handler.parse_dlr(account, callback))
    ]
    if reports:
        await rt.appender.append(
            InboxEntry(
                account.name,
                tuple(reports),
                _as_stored(account, callback),
                time.time(),
                callback_auth.reply_ref(query),
            )
        )
    return len(reports)


def _as_stored(account: Account, callback: CallbackRequest) -> RawCallback:
    """The callback as it is kept: its query already without the URL's key, and the
    account's secrets (and the key, should a provider echo it) scrubbed from the body."""
    kept = handler_for(account.provider).signed_headers
    scrub = _redactor(account)
    headers = callback.headers
    return RawCallback(
        callback.method,
        headers.get("content-type", ""),
        scrub.text(urlencode(list(callback.query))) if callback.query else "",
        {name: headers[name] for name in kept if name in headers},
        bounds.readable(scrub.bytes(callback.body).decode("utf-8", errors="replace")),
    )


_redactors: dict[int, tuple[Account, Redactor]] = {}


def _redactor(account: Account) -> Redactor:
    """The account's redactor, with its callback key: made once per account record
    (the directory hands out the same record until the account changes)."""
    cached = _redactors.get(id(account))
    if cached is not None and cached[0] is account:
        return cached[1]
    if len(_redactors) > 4096:
        _redactors.clear()
    secrets = redactor_for(account)
    made = Redactor.of([*secrets.secrets, account.callback_secret], secrets.companions)
    _redactors[id(account)] = (account, made)
    return made


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            # The client went away: nothing will be answered or stored.
            raise Unavailable("the callback's connection closed before its body arrived")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body exceeds {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
