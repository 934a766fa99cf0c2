"""Stored rows as domain records and back: the column lists and their order."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from service.model import (
    Account,
    AutoReplyRule,
    Event,
    MessageRecord,
    Priority,
    Status,
    Webhook,
)
from service.sealing import Sealer

MESSAGE_COLUMNS = (
    "id, seq, account, recipient, sender, text, encoding, segments, status, client_ref, "
    "request_id, error_code, error_text, http_status, http_response, attempts, "
    "created_at, updated_at, tried, routed, client, send_at, expires_at, callback_url, "
    "callback_events, callback_stopped_at, priority"
)
M_COLUMNS = ", ".join(f"m.{c.strip()}" for c in MESSAGE_COLUMNS.split(","))
"""MESSAGE_COLUMNS of a query that names the messages table `m`."""
ACCOUNT_COLUMNS = (
    "name, provider, credentials, sender, fallback_sender, active, pattern, priority, "
    "base_url, options, callback_secret, description, logo_url, signup_url"
)
EVENT_COLUMNS = "id, ts, event, message_id, account, data"
RULE_COLUMNS = "name, position, kind, pattern, reply, account, number, active"
WEBHOOK_COLUMNS = (
    "id, url, secret, events, description, active, cursor, last_status, last_error, "
    "last_attempt_at, failures, delivered, created_at"
)


def message(row: Sequence[Any]) -> MessageRecord:
    return MessageRecord(
        id=row[0],
        seq=row[1],
        account=row[2],
        to=row[3],
        sender=row[4],
        text=row[5],
        encoding=row[6],
        segments=row[7],
        status=Status(row[8]),
        client_ref=row[9],
        request_id=row[10],
        error_code=row[11],
        error_text=row[12],
        http_status=row[13],
        http_response=row[14],
        attempts=row[15],
        created_at=row[16],
        updated_at=row[17],
        tried=tuple(filter(None, row[18].split(","))),
        routed=bool(row[19]),
        client=row[20],
        send_at=row[21],
        expires_at=row[22],
        callback_url=row[23],
        callback_events=row[24],
        callback_stopped_at=row[25],
        priority=Priority(row[26]),
    )


def event(row: Sequence[Any]) -> Event:
    return Event(row[2], row[1], row[3], row[4], json.loads(row[5]), row[0])


def rule(row: Sequence[Any]) -> AutoReplyRule:
    return AutoReplyRule(row[0], row[1], row[2], row[3], row[4], row[5], row[6], bool(row[7]))


def account(row: Sequence[Any], sealer: Sealer | None) -> Account:
    """Without a sealer (stores the tests open directly) credentials are plain JSON."""
    return Account(
        name=row[0],
        provider=row[1],
        credentials=sealer.unseal(row[2]) if sealer else json.loads(row[2]),
        sender=row[3],
        fallback_sender=row[4],
        active=bool(row[5]),
        pattern=row[6],
        priority=row[7],
        base_url=row[8],
        options=json.loads(row[9]),
        callback_secret=row[10],
        description=row[11],
        logo_url=row[12],
        signup_url=row[13],
    )


def account_values(account: Account, sealer: Sealer | None) -> tuple[Any, ...]:
    """An account's values in ACCOUNT_COLUMNS order, its credentials sealed."""
    credentials = dict(account.credentials)
    return (
        account.name,
        account.provider,
        sealer.seal(credentials) if sealer else json.dumps(credentials),
        account.sender,
        account.fallback_sender,
        int(account.active),
        account.pattern,
        account.priority,
        account.base_url,
        json.dumps(dict(account.options)),
        account.callback_secret,
        account.description,
        account.logo_url,
        account.signup_url,
    )


def webhook(row: Sequence[Any], pending: int = 0) -> Webhook:
    return Webhook(
        id=row[0],
        url=row[1],
        secret=row[2],
        events=tuple(json.loads(row[3])),
        description=row[4],
        active=bool(row[5]),
        cursor=row[6],
        last_status=row[7],
        last_error=row[8],
        last_attempt_at=row[9],
        failures=row[10],
        delivered=row[11],
        created_at=row[12],
        pending=pending,
    )
