"""The /v1 JSON API of design.md §3."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from handlers import handler_for
from handlers.base import WireRequest
from service.accounts import account_from_body, public_view, secret_values
from service.clock import iso_ago
from service.compose import compose
from service.errors import BadRequest, NotFound, ProviderFailed, ValidationFailed
from service.model import (
    OPTED_OUT,
    OPTED_OUT_TEXT,
    Account,
    Balance,
    Event,
    MessageFilter,
    MessageRecord,
    Status,
)
from service.redact import redact
from service.runtime import Runtime
from service.transport import execute
from service.webhooks import webhook_from_body, webhook_view


def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


async def read_json(request: Request) -> Any:
    body = await request.body()
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest("the body must be valid JSON", field="body") from exc


def page_args(request: Request, *, default: int = 50) -> tuple[int, int | None]:
    """(limit, cursor) from the query; a cursor is the opaque position of the last row."""
    raw_limit = request.query_params.get("limit", str(default))
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 1000:
        raise ValidationFailed("limit must be a whole number from 1 to 1000", field="limit")
    raw_cursor = request.query_params.get("cursor")
    if raw_cursor is None or raw_cursor == "":
        return int(raw_limit), None
    if not raw_cursor.isdigit() or len(raw_cursor) > 18:
        raise BadRequest("cursor is not one this API gave", field="cursor")
    return int(raw_limit), int(raw_cursor)


def message_view(m: MessageRecord) -> dict[str, Any]:
    return {
        "id": m.id,
        "to": m.to,
        "status": m.status.value,
        "encoding": m.encoding,
        "segments": m.segments,
        "account": m.account,
        "sender": m.sender,
        "text": m.text,
        "client_ref": m.client_ref,
        "request_id": m.request_id or None,
        "error": {"code": m.error_code, "message": m.error_text} if m.error_code else None,
        "http_status": m.http_status,
        "http_response": m.http_response or None,
        "attempts": m.attempts,
        "created_at": m.created_at,
        "updated_at": m.updated_at,
    }


def event_view(e: Event) -> dict[str, Any]:
    return {"id": e.id, "ts": e.ts, "event": e.event, **e.data}


def idempotency_of(scope: str, key: str, body: Any) -> tuple[str, str]:
    """The (key, body hash) the store deduplicates a send by; `scope` keeps one
    client's keys apart from another's."""
    if not 1 <= len(key) <= 200:
        raise ValidationFailed("Idempotency-Key must be 1-200 characters", field="Idempotency-Key")
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return f"{scope}:{key}", hashlib.sha256(canonical).hexdigest()


async def queue_messages(
    rt: Runtime, body: Any, idempotency: tuple[str, str] | None = None
) -> Mapping[str, Any]:
    """Validate a send request and put its messages in the outbox: the 202 body.

    The API and the web console both send through here.
    """
    messages, response = await compose(body, rt.directory, rt.compose_rules)
    opted_out = await rt.store.suppressed([m.to for m in messages])
    if opted_out:
        messages = [replace(m, opted_out=m.to in opted_out) for m in messages]
        for view in response["messages"]:
            if view["to"] in opted_out:
                view["status"] = Status.FAILED.value
                view["error"] = {"code": OPTED_OUT, "message": OPTED_OUT_TEXT}
    given = await rt.store.enqueue(messages, response, idempotency)
    rt.wake_dispatcher()
    return given


async def send_messages(request: Request) -> Response:
    rt = runtime(request)
    body = await read_json(request)
    key = request.headers.get("idempotency-key")
    idempotency = None
    if key is not None:
        token = request.headers.get("authorization", "")
        idempotency = idempotency_of(hashlib.sha256(token.encode()).hexdigest()[:16], key, body)
    return JSONResponse(await queue_messages(rt, body, idempotency), status_code=202)


async def get_message(request: Request) -> Response:
    rt = runtime(request)
    message = await rt.store.get_message(request.path_params["id"])
    if message is None:
        raise NotFound("no such message", field="id")
    events = await rt.store.message_events(message.id)
    return JSONResponse({**message_view(message), "events": [event_view(e) for e in events]})


def message_filter(query: Mapping[str, str]) -> MessageFilter:
    """History filters from query parameters; an unknown status is refused."""
    status = query.get("status", "")
    if status and status not in Status.__members__.values():
        raise ValidationFailed(f"unknown status {status!r}", field="status")
    return MessageFilter(status=status, account=query.get("account", ""), to=query.get("to", ""))


async def list_messages(request: Request) -> Response:
    rt = runtime(request)
    limit, cursor = page_args(request)
    rows = await rt.store.list_messages(message_filter(request.query_params), limit, cursor)
    next_cursor = str(rows[-1].seq) if len(rows) == limit else None
    return JSONResponse({"messages": [message_view(m) for m in rows], "next_cursor": next_cursor})


async def stats_body(rt: Runtime) -> dict[str, Any]:
    """The /v1/stats body: kept counters, with reports unmatched past the TTL."""
    result = await rt.store.stats(iso_ago(rt.settings.unmatched_ttl))
    return result.as_body()


async def stats(request: Request) -> Response:
    return JSONResponse(await stats_body(runtime(request)))


async def add_account(rt: Runtime, body: Any) -> Account:
    account = account_from_body(body)
    await rt.store.create_account(account)
    rt.directory.invalidate()
    return account


async def change_account(rt: Runtime, existing: Account, body: Any) -> Account:
    """`existing` with a PATCH body applied and stored; secrets sent as the mask stay."""
    if isinstance(body, dict) and "name" in body and body["name"] != existing.name:
        raise ValidationFailed("an account cannot be renamed", field="name")
    account = account_from_body(body, existing)
    await rt.store.update_account(account)
    rt.directory.invalidate()
    return account


async def remove_account(rt: Runtime, name: str) -> None:
    await rt.store.delete_account(name)
    rt.directory.invalidate()


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


def balance_call(acct: Account) -> WireRequest | None:
    """The provider's balance request for this account; None where it has none."""
    handler = handler_for(acct.provider)
    return handler.balance_request(acct, acct.base_url)


async def fetch_balance(rt: Runtime, acct: Account) -> Balance:
    """Ask the provider; NotFound where it has no balance call, ProviderFailed (with the
    account's secrets scrubbed) when the call fails."""
    wire = balance_call(acct)
    if wire is None:
        raise NotFound(
            f"{acct.provider} has no balance call", field="account", code="not_supported"
        )
    try:
        return handler_for(acct.provider).parse_balance(acct, await execute(rt.client, wire))
    except Exception as exc:
        raise ProviderFailed(
            redact(f"the provider's balance call failed: {exc}", secret_values(acct))
        ) from exc


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
    Route("/v1/messages/{id}", get_message, methods=["GET"]),
    Route("/v1/stats", stats, methods=["GET"]),
    Route("/v1/accounts", accounts, methods=["GET", "POST"]),
    Route("/v1/accounts/{name}", account, methods=["GET", "PATCH", "DELETE"]),
    Route("/v1/balance/{account}", balance, methods=["GET"]),
    Route("/v1/webhooks", webhooks, methods=["GET", "POST"]),
    Route("/v1/webhooks/{id}", webhook, methods=["GET", "DELETE"]),
]
