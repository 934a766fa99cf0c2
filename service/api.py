"""The /v1 JSON API: messages, accounts, balances, counters and webhooks.

Each route reads its request and shapes its response; what the console and the
`smsgw` command do alike lives in service.usecases.
"""

from __future__ import annotations

import hashlib

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from service.accounts import public_view
from service.errors import NotFound
from service.http import page_args, principal, read_json, runtime
from service.status_callbacks import callbacks_view
from service.usecases.accounts import add_account, change_account, fetch_balance, remove_account
from service.usecases.messages import (
    cancel_message,
    event_view,
    idempotency_of,
    message_filter,
    message_view,
    queue_messages,
    stats_body,
    visible_message,
)
from service.webhooks import webhook_from_body, webhook_view


async def send_messages(request: Request) -> Response:
    rt = runtime(request)
    who = principal(request)
    body = await read_json(request)
    key = request.headers.get("idempotency-key")
    idempotency = None
    if key is not None:
        # A client's keys share its idempotency keys; an admin token has its own.
        token = request.headers.get("authorization", "")
        scope = (
            hashlib.sha256(token.encode()).hexdigest()[:16]
            if who.is_admin
            else f"client:{who.client}"
        )
        idempotency = idempotency_of(scope, key, body)
    return JSONResponse(await queue_messages(rt, body, idempotency, who), status_code=202)


async def get_message(request: Request) -> Response:
    rt = runtime(request)
    if request.method == "DELETE":
        message = await cancel_message(rt, request.path_params["id"], principal(request))
    else:
        message = await visible_message(rt, request.path_params["id"], principal(request))
    events = await rt.store.message_events(message.id)
    callbacks = await rt.store.status_callbacks(message.id)
    return JSONResponse(
        {
            **message_view(message),
            "events": [event_view(e) for e in events],
            "callbacks": callbacks_view(callbacks),
        }
    )


async def list_messages(request: Request) -> Response:
    rt = runtime(request)
    limit, cursor = page_args(request)
    filters = message_filter(request.query_params, principal(request))
    rows = await rt.store.list_messages(filters, limit, cursor)
    next_cursor = str(rows[-1].seq) if len(rows) == limit else None
    return JSONResponse({"messages": [message_view(m) for m in rows], "next_cursor": next_cursor})


async def stats(request: Request) -> Response:
    return JSONResponse(await stats_body(runtime(request), principal(request)))


async def accounts(request: Request) -> Response:
    rt = runtime(request)
    if request.method == "POST":
        account = await add_account(rt, await read_json(request))
        return JSONResponse(public_view(account, rt.settings.base_url), status_code=201)
    return JSONResponse(
        {"accounts": [public_view(a, rt.settings.base_url) for a in await rt.directory.all()]}
    )


async def account(request: Request) -> Response:
    rt = runtime(request)
    name = request.path_params["name"]
    existing = await rt.store.get_account(name)
    if existing is None:
        raise NotFound(f"no account named {name!r}", field="name")
    if request.method == "DELETE":
        await remove_account(rt, name)
        return Response(status_code=204)
    if request.method == "PATCH":
        existing = await change_account(rt, existing, await read_json(request))
    return JSONResponse(public_view(existing, rt.settings.base_url))


async def balance(request: Request) -> Response:
    rt = runtime(request)
    acct = await rt.directory.require(request.path_params["account"])
    answer = await fetch_balance(rt, acct)
    return JSONResponse(
        {"account": acct.name, "balance": answer.amount, "currency": answer.currency or None}
    )


async def webhooks(request: Request) -> Response:
    rt = runtime(request)
    if request.method == "POST":
        created = await rt.store.create_webhook(webhook_from_body(await read_json(request)))
        # The only time the secret is shown: receivers need it to verify signatures.
        return JSONResponse({**webhook_view(created), "secret": created.secret}, status_code=201)
    return JSONResponse({"webhooks": [webhook_view(w) for w in await rt.store.list_webhooks()]})


async def webhook(request: Request) -> Response:
    rt = runtime(request)
    webhook_id = request.path_params["id"]
    if request.method == "DELETE":
        if not await rt.store.delete_webhook(webhook_id):
            raise NotFound("no such webhook", field="id")
        return Response(status_code=204)
    found = await rt.store.get_webhook(webhook_id)
    if found is None:
        raise NotFound("no such webhook", field="id")
    return JSONResponse(webhook_view(found))


ROUTES = [
    Route("/v1/messages", send_messages, methods=["POST"]),
    Route("/v1/messages", list_messages, methods=["GET"]),
    Route("/v1/messages/{id}", get_message, methods=["GET", "DELETE"]),
    Route("/v1/stats", stats, methods=["GET"]),
    Route("/v1/accounts", accounts, methods=["GET", "POST"]),
    Route("/v1/accounts/{name}", account, methods=["GET", "PATCH", "DELETE"]),
    Route("/v1/balance/{account}", balance, methods=["GET"]),
    Route("/v1/webhooks", webhooks, methods=["GET", "POST"]),
    Route("/v1/webhooks/{id}", webhook, methods=["GET", "DELETE"]),
]
