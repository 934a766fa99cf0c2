"""Send: recipients and text, or the automation `number|message` box, queued exactly as
POST /v1/messages queues them (service.usecases.messages.queue_messages)."""

from __future__ import annotations

import re
import secrets
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from service.errors import SmsgwError
from service.http import runtime
from service.usecases.messages import idempotency_of, queue_messages
from service.web.render import client_error, form_of, page, session_of

_SPLIT = re.compile(r"[\s,;]+")
_INDEXED = re.compile(r"to\[(\d+)\]")


def body_of(form: dict[str, str]) -> dict[str, Any]:
    """The API body the form stands for. Textareas submit line breaks as CRLF; the
    operator typed one character, and the live counter counted one, so one it is."""
    body: dict[str, Any] = {}
    automation = form.get("automation", "").replace("\r\n", "\n")
    to = [n for n in _SPLIT.split(form.get("to", "")) if n]
    text = form.get("text", "").replace("\r\n", "\n")
    if automation or not (to or text):
        body["automation"] = automation
    if to or text:
        body["to"] = to
        body["text"] = text
    for key in ("sender", "account"):
        if form.get(key, "").strip():
            body[key] = form[key].strip()
    return body


def _field(error: SmsgwError) -> str:
    """The form input an API error is about: every `to[n]` is the recipients box."""
    return "to" if _INDEXED.fullmatch(error.field) else error.field


def _message(error: SmsgwError) -> str:
    indexed = _INDEXED.fullmatch(error.field)
    return f"Recipient {int(indexed[1]) + 1}: {error.message}" if indexed else error.message


async def _form_page(
    request: Request,
    values: dict[str, str],
    *,
    status: int = 200,
    error: SmsgwError | None = None,
    queued: list[dict[str, Any]] | None = None,
) -> Response:
    rt = runtime(request)
    return page(
        request,
        "send.html",
        status=status,
        values=values,
        accounts=[a for a in await rt.directory.all() if a.active],
        error_field=_field(error) if error else "",
        error=_message(error) if error else "",
        queued=queued,
        # A fresh key per form shown: sending the same form twice (reload, double
        # click) queues it once, through the API's Idempotency-Key.
        form_key=secrets.token_urlsafe(12),
    )


async def send(request: Request) -> Response:
    if request.method == "GET":
        return await _form_page(request, {})
    rt = runtime(request)
    form = form_of(request)
    body = body_of(form)
    try:
        idempotency = idempotency_of(session_of(request).scope, form.get("form_key", ""), body)
        given = await queue_messages(rt, body, idempotency)
    except SmsgwError as exc:
        if not client_error(exc):
            raise
        return await _form_page(request, form, status=exc.status, error=exc)
    return await _form_page(
        request, {"account": form.get("account", "")}, queued=list(given["messages"])
    )
