"""The send answer, built in one place: its exact bytes are what an idempotent repeat
gets back from the store, so key order and shape are pinned here."""

from __future__ import annotations

import json
from dataclasses import replace

from service.model import NewMessage
from service.usecases.messages import queued_view

MESSAGE = NewMessage(
    id="m1",
    account="sandbox",
    to="+46700000001",
    text="hi",
    sender="smsgw",
    encoding="gsm7",
    segments=1,
    client_ref="ref",
)


def test_a_queued_message_is_announced_with_the_fields_of_the_contract() -> None:
    assert json.dumps(queued_view(MESSAGE)) == (
        '{"id": "m1", "to": "+46700000001", "status": "queued", "encoding": "gsm7", '
        '"segments": 1, "account": "sandbox", "client_ref": "ref", '
        '"priority": "normal", "send_at": null, "expires_at": null}'
    )


def test_a_scheduled_message_is_announced_with_its_time_and_validity() -> None:
    scheduled = replace(MESSAGE, send_at=1893456000.0, expires_at=1893456600.5)
    assert json.dumps(queued_view(scheduled)) == (
        '{"id": "m1", "to": "+46700000001", "status": "scheduled", "encoding": "gsm7", '
        '"segments": 1, "account": "sandbox", "client_ref": "ref", '
        '"priority": "normal", "send_at": "2030-01-01T00:00:00.000Z", '
        '"expires_at": "2030-01-01T00:10:00.500Z"}'
    )


def test_an_opted_out_recipient_is_announced_as_failed_in_the_same_place() -> None:
    assert json.dumps(queued_view(replace(MESSAGE, opted_out=True))) == (
        '{"id": "m1", "to": "+46700000001", "status": "failed", "encoding": "gsm7", '
        '"segments": 1, "account": "sandbox", "client_ref": "ref", '
        '"priority": "normal", "send_at": null, "expires_at": null, '
        '"error": {"code": "opted_out", '
        '"message": "the recipient opted out (STOP); nothing was sent"}}'
    )
