"""Provider callbacks: /callbacks/{account}/dlr and /callbacks/{account}/inbound.

A callback is answered 2xx only after what it reported is committed; when the store
cannot commit, the provider gets 503 and retries. The account's secret travels in
the `key` query parameter of the URL the provider was given.
"""

from __future__ import annotations

import hmac
from dataclasses import replace
from functools import partial
from urllib.parse import urlencode

import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from handlers import handler_for
from handlers.base import CallbackRequest
from service import autoreply, bounds, reconcile
from service.accounts import callback_urls, new_callback_secret
from service.clock import iso_ago
from service.errors import Forbidden, Unauthorized
from service.model import Account
from service.phone import e164_or_as_given
from service.ratelimit import CALLBACK_AUTH
from service.runtime import Runtime

_log = structlog.get_logger("smsgw.callbacks")
SECRET_PARAM = "key"  # noqa: S105 - the parameter's name, not a secret
# Names the auto-reply a provider sent from a callback's answer (TwiML), on the
# status URL given with it: the provider's reports then find that message.
REPLY_PARAM = "ref"
_OURS = frozenset({SECRET_PARAM, REPLY_PARAM})
_DECOY_SECRET = new_callback_secret()


async def _authenticated(request: Request) -> tuple[Runtime, Account, CallbackRequest]:
    rt: Runtime = request.app.state.runtime
    account = await rt.directory.get(request.path_params["account"])
    given = request.query_params.get(SECRET_PARAM, "")
    # An unknown account is compared with a decoy and refused like a wrong key, with
    # the same work, answer and count: account names cannot be found by asking.
    expected = account.callback_secret if account is not None else _DECOY_SECRET
    key_matches = hmac.compare_digest(given.encode(), expected.encode())
    if account is None or not given or not key_matches:
        refused = (
            Unauthorized("the callback URL's key is missing", field=SECRET_PARAM)
            if not given
            else Forbidden("the callback URL's account and key do not match", field=SECRET_PARAM)
        )
        address = request.client.host if request.client else ""
        raise rt.auth_failures.refusal(address, CALLBACK_AUTH, refused)
    callback = CallbackRequest(
        method=request.method,
        # The URL as the provider called it, which is what signatures cover.
        url=rt.settings.base_url
        + request.url.path
        + (f"?{request.url.query}" if request.url.query else ""),
        query=[(k, v) for k, v in request.query_params.multi_items() if k not in _OURS],
        headers=request.headers,
        body=await request.body(),
    )
    handler_for(account.provider).authenticate(account, callback)
    return rt, account, callback


async def delivery_report(request: Request) -> Response:
    rt, account, callback = await _authenticated(request)
    handler = handler_for(account.provider)
    reports = [bounds.checked_report(r) for r in handler.parse_dlr(account, callback)]
    reply_id = request.query_params.get(REPLY_PARAM)
    if reply_id and reports:
        first = reports[0]
        await rt.store.adopt_request_id(
            account.name,
            reply_id,
            first.request_id,
            reconcile.match_key(first.request_id, first.recipient, handler.shares_request_ids),
        )
    for report in reports:
        _log.info(
            "dlr.received",
            account=account.name,
            provider=account.provider,
            request_id=report.request_id,
            status=report.status.value,
            error_code=report.error_code,
        )
    outcomes = [
        await rt.store.apply_report(
            account.name,
            report,
            reconcile.match_key(report.request_id, report.recipient, handler.shares_request_ids),
        )
        for report in reports
    ]
    return JSONResponse({"ok": True, "reports": [o.value for o in outcomes]})


async def inbound(request: Request) -> Response:
    rt, account, callback = await _authenticated(request)
    handler = handler_for(account.provider)
    messages = [bounds.checked_inbound(m) for m in handler.parse_inbound(account, callback)]
    policy = rt.autoreply_policy
    since = iso_ago(policy.window)
    # A provider that expects a body in answer (TwiML) carries the reply in it, but
    # an answer holds one reply: a batch of messages is answered through the outbox.
    inline = len(messages) == 1 and handler.inbound_answer(account, None) is not None
    results = []
    for message in messages:
        message = replace(message, sender=e164_or_as_given(message.sender, policy.default_region))
        plan = partial(
            autoreply.decide,
            account=account.name,
            inbound=message,
            policy=policy,
            max_chars=handler.max_text_chars,
            fallback_sender=account.sender or rt.settings.default_sender,
            inline=inline,
        )
        results.append(await rt.store.receive_inbound(account.name, message, since, plan))
    replies = [r.decision.reply for r in results if r.decision.reply is not None]
    if any(not r.decision.inline for r in results if r.decision.reply is not None):
        rt.wake_dispatcher()
    inline_reply = next((r.decision.reply for r in results if r.decision.inline), None)
    status_url = ""
    if inline_reply is not None:
        dlr_url = callback_urls(account, rt.settings.base_url)["dlr"]
        status_url = f"{dlr_url}&{urlencode({REPLY_PARAM: inline_reply.id})}"
    answer = handler.inbound_answer(
        account, inline_reply.text if inline_reply else None, status_url
    )
    if answer is not None:
        return Response(answer.body, answer.status_code, headers=dict(answer.headers))
    return JSONResponse(
        {
            "ok": True,
            "stored": sum(1 for r in results if r.id),
            "replies": [m.id for m in replies],
        }
    )


ROUTES = [
    Route("/callbacks/{account}/dlr", delivery_report, methods=["GET", "POST"]),
    Route("/callbacks/{account}/inbound", inbound, methods=["GET", "POST"]),
]
