"""Sending rules: turn a send request into validated messages for the outbox.

Every rule that can refuse a message before it reaches a provider lives here:
recipient numbers, the automation `number|message` form, sender IDs, the account,
and the provider's maximum length. A refusal names the field at fault.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

from handlers import handler_for
from service import bounds
from service.accounts import AccountDirectory
from service.callback_records import CALLBACK_EVENTS, FINAL_ONLY
from service.errors import ValidationFailed
from service.model import Account, NewMessage, Priority
from service.phone import to_e164
from service.segments import segment
from service.timing import timing
from service.validation import http_url, json_object

_ALPHANUMERIC_SENDER = re.compile(r"[A-Za-z0-9 .\-_&]{1,11}")
_NUMERIC_SENDER = re.compile(r"\+?[0-9]{1,20}")
_FIELDS = {
    "to",
    "text",
    "sender",
    "account",
    "client_ref",
    "automation",
    "send_at",
    "valid_for",
    "expires_at",
    "callback_url",
    "callback_events",
    "priority",
}


@dataclass(frozen=True, slots=True)
class ComposeRules:
    default_region: str
    default_sender: str
    max_recipients: int


def check_sender(sender: str, field: str = "sender") -> str:
    """Alphanumeric sender IDs hold at most 11 characters, numeric ones 20 digits."""
    if _NUMERIC_SENDER.fullmatch(sender) or (
        _ALPHANUMERIC_SENDER.fullmatch(sender) and not sender.isspace()
    ):
        return sender
    raise ValidationFailed(
        "sender must be at most 11 letters, digits or spaces, or at most 20 digits",
        field=field,
        code="invalid_sender",
    )


def parse_priority(value: Any) -> Priority:
    """`high`, `normal` (also when absent) or `bulk`."""
    if value is None:
        return Priority.NORMAL
    if isinstance(value, str) and value in Priority.__members__.values():
        return Priority(value)
    raise ValidationFailed(
        f"priority must be one of {', '.join(p.value for p in Priority)}", field="priority"
    )


def parse_automation(value: Any) -> tuple[str, str]:
    """The Route Mobile connector's `number|message` box: the first '|' splits."""
    if not isinstance(value, str) or "|" not in value:
        raise ValidationFailed("automation must be 'number|message'", field="automation")
    number, text = value.split("|", 1)
    return number.strip(), text


async def compose(
    body: Any,
    directory: AccountDirectory,
    rules: ComposeRules,
    allowed: tuple[str, ...] | None = None,
) -> list[NewMessage]:
    """The validated messages a send request asks for, one per recipient. `allowed`:
    the only accounts the sender may use (a client's), None for every account."""
    body = json_object(body, _FIELDS)
    text: Any
    if "automation" in body:
        if "to" in body or "text" in body:
            raise ValidationFailed("give either automation or to and text", field="automation")
        number, text = parse_automation(body["automation"])
        numbers: list[tuple[str, str]] = [(number, "automation")]
    else:
        text = body.get("text")
        numbers = _recipients(body.get("to"), rules.max_recipients)
    if not isinstance(text, str) or not text:
        raise ValidationFailed("text must be non-empty text", field="text")
    account = await _account(body.get("account"), directory, allowed)
    handler = handler_for(account.provider)
    if len(text) > handler.max_text_chars:
        raise ValidationFailed(
            f"text is {len(text)} characters; {account.provider} takes at most "
            f"{handler.max_text_chars}",
            field="text",
            code="text_too_long",
        )
    given_sender = body.get("sender")
    if given_sender is not None and not isinstance(given_sender, str):
        raise ValidationFailed("sender must be text", field="sender")
    sender = check_sender((given_sender or account.sender or rules.default_sender).strip())
    client_ref = body.get("client_ref", "")
    if not isinstance(client_ref, str) or len(client_ref) > bounds.IDENTIFIER:
        raise ValidationFailed(
            f"client_ref must be text of at most {bounds.IDENTIFIER} characters",
            field="client_ref",
        )
    when = timing(body, time.time())
    callback_url, callback_events = _callbacks(body)
    priority = parse_priority(body.get("priority"))
    segmentation = segment(text)
    return [
        NewMessage(
            id=uuid.uuid4().hex,
            account=account.name,
            to=to_e164(raw, rules.default_region, field=field),
            text=text,
            sender=sender,
            encoding=segmentation.encoding,
            segments=segmentation.segments,
            client_ref=client_ref,
            routed=body.get("account") is None,
            send_at=when.send_at,
            expires_at=when.expires_at,
            callback_url=callback_url,
            callback_events=callback_events,
            priority=priority,
        )
        for raw, field in numbers
    ]


def _callbacks(body: dict[str, Any]) -> tuple[str | None, str]:
    """Where status changes go (None: the client's default) and which ones."""
    given = body.get("callback_url")
    url = None if given is None else http_url(given, "callback_url")
    events = body.get("callback_events", FINAL_ONLY)
    if events not in CALLBACK_EVENTS:
        raise ValidationFailed(
            "callback_events must be 'final' (the final status only) or 'all'",
            field="callback_events",
        )
    return url, events


def _recipients(value: Any, limit: int) -> list[tuple[str, str]]:
    if isinstance(value, str):
        return [(value, "to")]
    if not isinstance(value, list) or not value:
        raise ValidationFailed("to must be a number or a non-empty list of numbers", field="to")
    if len(value) > limit:
        raise ValidationFailed(
            f"at most {limit} recipients per request", field="to", code="too_many_recipients"
        )
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise ValidationFailed("each recipient must be text", field=f"to[{index}]")
    return [(item, f"to[{index}]") for index, item in enumerate(value)]


async def _account(
    name: Any, directory: AccountDirectory, allowed: tuple[str, ...] | None
) -> Account:
    if name is not None:
        if not isinstance(name, str):
            raise ValidationFailed("account must be text", field="account")
        if allowed is not None and name not in allowed:
            raise ValidationFailed(
                f"account {name!r} is not one this client may send with", field="account"
            )
        account = await directory.get(name)
        if account is None:
            raise ValidationFailed(f"no account named {name!r}", field="account")
        if not account.active:
            raise ValidationFailed(f"account {name!r} is inactive", field="account")
        return account
    for account in await directory.all():
        if account.active and (allowed is None or account.name in allowed):
            return account
    raise ValidationFailed("no active account to send with", field="account")
