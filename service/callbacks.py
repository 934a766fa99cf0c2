"""Inbound-message callbacks: /callbacks/{account}/inbound.

Answered synchronously, since a provider such as Twilio takes the auto-reply from the
answer (TwiML). The callback is answered 2xx only after the message is committed;
when the store cannot commit, the provider gets 503 and retries. Delivery reports
take the leaner door of `service.ingest`.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from handlers import handler_for
from handlers.base import CallbackRequest
from service import autoreply, bounds, callback_auth
from service.accounts import callback_urls
from service.clock import iso_ago
from service.model import Account
from service.phone import e164_or_as_given
from service.runtime import Runtime


async def _authenticated(request: Request) -> tuple[Runtime, Account, CallbackRequest]:
    rt: Runtime = request.app.state.runtime
    query = request.query_params.multi_items()
    account = callback_auth.authenticate(
        await rt.directory.get(request.path_params["account"]),
        query,
        rt.auth_failures,
        request.client.host if request.client else "",
    )
    callback = callback_auth.callback_request(
        account,
        request.method,
        rt.settings.base_url
        + request.url.path
        + (f"?{request.url.query}" if request.url.query else ""),
        query,
        request.headers,
        await request.body(),
    )
    return rt, account, callback


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
        status_url = f"{dlr_url}&{urlencode({callback_auth.REPLY_PARAM: inline_reply.id})}"
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


ROUTES = [Route("/callbacks/{account}/inbound", inbound, methods=["GET", "POST"])]
