"""Committed state changes become one JSON log line each, with phone numbers masked."""

from __future__ import annotations

import json

import pytest

from service.events import EventFormat, EventLogger, mask_phone
from service.logging import configure_logging
from service.model import Event


def test_a_phone_number_keeps_only_its_ends() -> None:
    assert mask_phone("+46700000123") == "+46******123"
    assert mask_phone("12345") == "*****"


def test_each_event_is_one_json_line_with_stable_keys(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("json")
    log = EventLogger(EventFormat(lambda name: "connectel", log_pii=False))
    log(
        [
            Event(
                "message.delivered",
                "2026-01-01T00:00:00.000Z",
                "m1",
                "acc",
                {"status": "delivered", "request_id": "R1", "to": "+46700000123"},
                7,
            )
        ]
    )
    [line] = capsys.readouterr().out.splitlines()
    record = json.loads(line)
    assert record["event"] == "message.delivered" and record["level"] == "info"
    assert record["ts"].endswith("Z") or "+00:00" in record["ts"]
    assert (record["message_id"], record["account"], record["provider"]) == (
        "m1",
        "acc",
        "connectel",
    )
    assert (record["status"], record["request_id"]) == ("delivered", "R1")
    assert record["to"] == "+46******123"


def test_numbers_are_logged_whole_when_pii_logging_is_on(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("json")
    EventLogger(EventFormat(lambda name: "", log_pii=True))(
        [Event("inbound.received", "t", "", "a", {"sender": "+46700000123"})]
    )
    assert json.loads(capsys.readouterr().out)["sender"] == "+46700000123"
