"""Provider callbacks: /callbacks/{account}/dlr and /callbacks/{account}/inbound.

A callback is answered 2xx only after what it reported is committed; when the store
cannot commit, the provider gets 503 and retries. The account's secret travels in
the `key` query parameter of the URL the provider was given.
"""

from __future__ import annotations

import hmac

import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from handlers import handler_for
from handlers.base import CallbackRequest
from service import reconcile
from service.errors import Forbidden, NotFound, Unauthorized
from service.model import Account
from service.runtime import Runtime

_log = structlog.get_logger("smsgw.callbacks")
SECRET_PARAM = "key"  # noqa: S105 - the parameter's name, not a secret


async def _authenticated(request: Request) -> tuple[Runtime, Account, CallbackRequest]:
    rt: Runtime = request.app.state.runtime
    account = await rt.directory.get(request.path_params["account"])
    if account is None:
        raise NotFound("no such account", field="account")
    given = request.query_params.get(SECRET_PARAM)
    if not given:
        raise Unauthorized("the callback URL's key is missing", field=SECRET_PARAM)
    if not hmac.compare_digest(given.encode(), account.callback_secret.encode()):
        raise Forbidden("the callback URL's key is wrong", field=SECRET_PARAM)
    callback = CallbackRequest(
        method=request.method,
        # The URL as the provider called it, which is what signatures cover.
        url=rt.settings.base_url
        + request.url.path
        + (f"?{request.url.query}" if request.url.query else ""),
        query=[(k, v) for k, v in request.query_params.multi_items() if k != SECRET_PARAM],
        headers=request.headers,
        body=await request.body(),
    )
    handler_for(account.provider).authenticate(account, callback)
    return rt, account, callback


async def delivery_report(request: Request) -> Response:
    rt, account, callback = await _authenticated(request)
    handler = handler_for(account.provider)
    reports = handler.parse_dlr(account, callback)
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
    messages = handler.parse_inbound(account, callback)
    stored = [await rt.store.add_inbound(account.name, m) for m in messages]
    answer = handler.inbound_answer(account, None)
    if answer is not None:
        return Response(answer.body, answer.status_code, headers=dict(answer.headers))
    return JSONResponse({"ok": True, "stored": sum(stored)})


ROUTES = [
    Route("/callbacks/{account}/dlr", delivery_report, methods=["GET", "POST"]),
    Route("/callbacks/{account}/inbound", inbound, methods=["GET", "POST"]),
]
