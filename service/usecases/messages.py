"""Queueing messages, and the views of messages, events and counters every front door
shows."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from service import bounds
from service.clock import iso_ago, iso_of
from service.compose import compose
from service.errors import Conflict, NotFound, TooManyRequests, ValidationFailed
from service.model import (
    OPTED_OUT,
    OPTED_OUT_TEXT,
    Event,
    MessageFilter,
    MessageRecord,
    NewMessage,
    Priority,
    Status,
)
from service.principals import ADMIN_PRINCIPAL, Principal
from service.quotas import Charge, Usage, usage_view
from service.runtime import Runtime


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
        "client": m.client,
        "request_id": m.request_id or None,
        "error": {"code": m.error_code, "message": m.error_text} if m.error_code else None,
        "http_status": m.http_status,
        "http_response": m.http_response or None,
        "attempts": m.attempts,
        "created_at": m.created_at,
        "updated_at": m.updated_at,
        "priority": m.priority.value,
        **_timing_view(m.send_at, m.expires_at),
        "callback_url": m.callback_url or None,
        "callback_events": m.callback_events,
        "callbacks_stopped_at": m.callback_stopped_at,
    }


def _timing_view(send_at: float | None, expires_at: float | None) -> dict[str, str | None]:
    return {
        "send_at": iso_of(send_at) if send_at is not None else None,
        "expires_at": iso_of(expires_at) if expires_at is not None else None,
    }


def event_view(e: Event) -> dict[str, Any]:
    return {"id": e.id, "ts": e.ts, "event": e.event, **e.data}


def queued_view(m: NewMessage) -> dict[str, Any]:
    """How the answer to a send announces a message; an opted-out recipient's has
    already failed."""
    view: dict[str, Any] = {
        "id": m.id,
        "to": m.to,
        "status": (Status.QUEUED if m.send_at is None else Status.SCHEDULED).value,
        "encoding": m.encoding,
        "segments": m.segments,
        "account": m.account,
        "client_ref": m.client_ref,
        "priority": m.priority.value,
        **_timing_view(m.send_at, m.expires_at),
    }
    if m.opted_out:
        view["status"] = Status.FAILED.value
        view["error"] = {"code": OPTED_OUT, "message": OPTED_OUT_TEXT}
    return view


def idempotency_of(scope: str, key: str, body: Any) -> tuple[str, str]:
    """The (key, body hash) the store deduplicates a send by; `scope` keeps one
    client's keys apart from another's."""
    if not 1 <= len(key) <= bounds.IDEMPOTENCY_KEY:
        raise ValidationFailed(
            f"Idempotency-Key must be 1-{bounds.IDEMPOTENCY_KEY} characters",
            field="Idempotency-Key",
        )
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return f"{scope}:{key}", hashlib.sha256(canonical).hexdigest()


async def queue_messages(
    rt: Runtime,
    body: Any,
    idempotency: tuple[str, str] | None = None,
    principal: Principal = ADMIN_PRINCIPAL,
) -> Mapping[str, Any]:
    """Validate a send request and put its messages in the outbox: the answer to give.

    The answer is stored with the idempotency key, so a repeated send gets the first
    answer back, not one built again. A client's messages are its own, sent only with
    the accounts it may use, and counted against its rate limit and quotas (an admin
    token has none).
    """
    composed = await compose(body, rt.directory, rt.compose_rules, principal.accounts)
    unsigned = principal.is_admin and not rt.settings.status_callback_secret
    if unsigned and any(m.callback_url for m in composed):
        raise ValidationFailed(
            "an admin token's send has no client secret to sign its callbacks with: "
            "set SMSGW_CALLBACK_SECRET ([status_callbacks] secret) first",
            field="callback_url",
        )
    opted_out = await rt.store.suppressed([m.to for m in composed])
    messages = [replace(m, opted_out=m.to in opted_out, client=principal.client) for m in composed]
    answer = {"messages": [queued_view(m) for m in messages]}
    if principal.client is None:
        given = await rt.store.enqueue(messages, answer, idempotency)
    else:
        charge = Charge(principal.client, rt.clock())
        try:
            given = await rt.store.enqueue(messages, answer, idempotency, charge)
        except TooManyRequests as refusal:
            rt.metrics.client_refused(principal.client, refusal.code)
            raise
    rt.wake_dispatcher(urgent=any(m.priority is Priority.HIGH for m in messages))
    return given


async def cancel_message(
    rt: Runtime, message_id: str, principal: Principal = ADMIN_PRINCIPAL
) -> MessageRecord:
    """Cancel a message that has not been claimed for sending; the message after.
    Another client's message is as unknown as one that does not exist."""
    await visible_message(rt, message_id, principal)
    refused = await rt.store.cancel(message_id)
    if refused is not None:
        raise Conflict(
            f"the message is {refused.value}; only a scheduled or queued message that "
            "is not being sent can be cancelled",
            field="id",
            code="not_cancellable",
        )
    message = await rt.store.get_message(message_id)
    if message is None:  # deleted between the two reads: nothing in smsgw deletes one
        raise NotFound("no such message", field="id")
    return message


def message_filter(
    query: Mapping[str, str], principal: Principal = ADMIN_PRINCIPAL
) -> MessageFilter:
    """History filters from query parameters; an unknown status is refused. A client
    sees only its own messages, whatever `client` it asks for."""
    status = query.get("status", "")
    if status and status not in Status.__members__.values():
        raise ValidationFailed(f"unknown status {status!r}", field="status")
    return MessageFilter(
        status=status,
        account=query.get("account", ""),
        to=query.get("to", ""),
        client=query.get("client", "") if principal.is_admin else (principal.client or ""),
    )


async def visible_message(
    rt: Runtime, message_id: str, principal: Principal = ADMIN_PRINCIPAL
) -> MessageRecord:
    """The message, if this principal may see it: another client's is as unknown as
    one that does not exist (404, not 403), so ids reveal nothing."""
    message = await rt.store.get_message(message_id)
    if message is None or not (principal.is_admin or message.client == principal.client):
        raise NotFound("no such message", field="id")
    return message


async def stats_body(rt: Runtime, principal: Principal = ADMIN_PRINCIPAL) -> dict[str, Any]:
    """The counters as /v1/stats, the console and `smsgw stats` show them, with reports
    unmatched past the TTL. A client's key gets its own counters only, and its usage."""
    if principal.client is not None:
        own = await rt.store.client_counters(principal.client)
        at = rt.clock()
        used = await rt.store.client_usage([principal.client], at)
        usage = used.get(principal.client, Usage())
        return {"total": own.as_dict(), "usage": usage_view(usage, at)}
    result = await rt.store.stats(iso_ago(rt.settings.unmatched_ttl))
    return result.as_body()
