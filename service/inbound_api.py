"""The inbound side of /v1: received messages, auto-reply rules, the suppression list."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from service.autoreply import rule_from_body, rule_view
from service.errors import Conflict, NotFound, ValidationFailed
from service.http import page_args, read_json, runtime
from service.model import InboundRecord, Suppression
from service.phone import to_e164
from service.usecases.messages import message_view


def inbound_view(i: InboundRecord) -> dict[str, Any]:
    return {
        "id": i.id,
        "account": i.account,
        "from": i.sender,
        "to": i.recipient,
        "text": i.text,
        "provider_id": i.provider_id or None,
        "received_at": i.received_at,
        "rule": i.rule or None,
        "reply_note": i.reply_note or None,
        "reply": message_view(i.reply) if i.reply is not None else None,
    }


def suppression_view(s: Suppression) -> dict[str, Any]:
    return {
        "number": s.number,
        "keyword": s.keyword,
        "account": s.account or None,
        "created_at": s.created_at,
    }


async def list_inbound(request: Request) -> Response:
    rt = runtime(request)
    limit, cursor = page_args(request)
    rows = await rt.store.list_inbound(limit, cursor)
    next_cursor = str(rows[-1].id) if len(rows) == limit else None
    return JSONResponse({"inbound": [inbound_view(i) for i in rows], "next_cursor": next_cursor})


async def autoreplies(request: Request) -> Response:
    rt = runtime(request)
    if request.method == "POST":
        rule = rule_from_body(await read_json(request))
        if any(r.name == rule.name for r in await rt.store.list_rules()):
            raise Conflict(f"a rule named {rule.name!r} exists", field="name")
        await rt.store.put_rule(rule)
        return JSONResponse(rule_view(rule), status_code=201)
    return JSONResponse({"autoreplies": [rule_view(r) for r in await rt.store.list_rules()]})


async def autoreply(request: Request) -> Response:
    rt = runtime(request)
    name = request.path_params["name"]
    existing = next((r for r in await rt.store.list_rules() if r.name == name), None)
    if existing is None:
        raise NotFound(f"no rule named {name!r}", field="name")
    if request.method == "DELETE":
        await rt.store.delete_rule(name)
        return Response(status_code=204)
    if request.method == "PATCH":
        body = await read_json(request)
        if isinstance(body, dict) and body.get("name", name) != name:
            raise ValidationFailed("a rule cannot be renamed", field="name")
        existing = rule_from_body(body, existing)
        await rt.store.put_rule(existing)
    return JSONResponse(rule_view(existing))


async def suppressions(request: Request) -> Response:
    rt = runtime(request)
    if request.method == "POST":
        body = await read_json(request)
        if not isinstance(body, dict) or not isinstance(body.get("number"), str):
            raise ValidationFailed("number must be a phone number", field="number")
        number = to_e164(body["number"], rt.settings.default_region, field="number")
        await rt.store.suppress(number, "API", "")
        [added] = [s for s in await rt.store.list_suppressions() if s.number == number]
        return JSONResponse(suppression_view(added), status_code=201)
    rows = await rt.store.list_suppressions()
    return JSONResponse({"suppressions": [suppression_view(s) for s in rows]})


async def suppression(request: Request) -> Response:
    rt = runtime(request)
    number = to_e164(request.path_params["number"], rt.settings.default_region, field="number")
    if not await rt.store.unsuppress(number):
        raise NotFound(f"{number} is not on the suppression list", field="number")
    return Response(status_code=204)


ROUTES = [
    Route("/v1/inbound", list_inbound, methods=["GET"]),
    Route("/v1/autoreplies", autoreplies, methods=["GET", "POST"]),
    Route("/v1/autoreplies/{name}", autoreply, methods=["GET", "PATCH", "DELETE"]),
    Route("/v1/suppressions", suppressions, methods=["GET", "POST"]),
    Route("/v1/suppressions/{number}", suppression, methods=["DELETE"]),
]
