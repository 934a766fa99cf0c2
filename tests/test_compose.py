"""Sending rules that need no provider: sender IDs and the automation box."""

from __future__ import annotations

import pytest

from service.compose import check_sender, parse_automation
from service.errors import ValidationFailed


@pytest.mark.parametrize("sender", ["IKEA", "Shop 24", "A" * 11, "46700000000", "+" + "1" * 20])
def test_valid_sender_ids_pass(sender: str) -> None:
    assert check_sender(sender) == sender


@pytest.mark.parametrize("sender", ["", " ", "A" * 12, "1" * 21, "shop@home", "Ünicode"])
def test_invalid_sender_ids_are_refused_naming_the_field(sender: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        check_sender(sender)
    assert caught.value.field == "sender"


def test_the_first_pipe_separates_number_and_message() -> None:
    assert parse_automation(" 46700000000 |Hi | there") == ("46700000000", "Hi | there")


@pytest.mark.parametrize("value", ["46700000000 Hello", 46700000000, None])
def test_an_automation_without_a_pipe_is_refused(value: object) -> None:
    with pytest.raises(ValidationFailed):
        parse_automation(value)
