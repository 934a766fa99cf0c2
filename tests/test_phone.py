"""Normalizing recipient numbers to E.164."""

from __future__ import annotations

import pytest

from service.errors import ValidationFailed
from service.phone import to_e164

SE = "+46700000000"


# -- accepted forms ----------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "+46700000000",
        "0046700000000",
        "46700000000",
        "  +46700000000  ",
        "+46 70 000 00 00",
        "+46-70-000-00-00",
        "+46.70.000.00.00",
        "+46 (70) 000-00.00",
        "(+46) 70 000 00 00",
        "00 46 70 000 00 00",
        "46 70-000 00 00",
    ],
)
def test_international_forms_normalize_to_e164(raw: str) -> None:
    assert to_e164(raw) == SE


def test_a_valid_number_next_to_a_test_number_is_accepted() -> None:
    assert to_e164("+46700000001") == "+46700000001"


def test_international_digits_without_plus_are_accepted_as_route_mobile_sends_them() -> None:
    assert to_e164("12025550123") == "+12025550123"


def test_e164_output_is_idempotent() -> None:
    assert to_e164(to_e164("0046 70 000 00 00")) == SE


# -- default region ----------------------------------------------------------------


def test_a_national_number_is_read_in_the_default_region() -> None:
    assert to_e164("0700000000", "SE") == SE


def test_a_national_number_tolerates_separators() -> None:
    assert to_e164(" 070-000 00.00 ", "SE") == SE


def test_the_default_region_is_case_insensitive() -> None:
    assert to_e164("0700000000", "se") == SE


def test_a_national_number_without_trunk_prefix_is_read_in_the_default_region() -> None:
    assert to_e164("2025550123", "US") == "+12025550123"


def test_a_number_that_is_not_national_falls_back_to_international_digits() -> None:
    assert to_e164("46700000000", "US") == SE


def test_an_explicit_international_prefix_ignores_the_default_region() -> None:
    assert to_e164("+12025550123", "SE") == "+12025550123"
    assert to_e164("0046700000000", "US") == SE


def test_a_national_number_without_a_default_region_is_rejected() -> None:
    with pytest.raises(ValidationFailed):
        to_e164("0700000000")


def test_an_unknown_default_region_is_a_configuration_error_not_a_validation_error() -> None:
    with pytest.raises(ValueError, match="region") as caught:
        to_e164("0700000000", "XX")
    assert not isinstance(caught.value, ValidationFailed)


# -- rejects -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "+",
        "00",
        "abc",
        "+46 70 ABC 00 00",
        "+1 800 FLOWERS",
        "+12",
        "12",
        "+46700000000000000000",
        "4670000000000000000000000000",
        "+0046700000000",
        "++46700000000",
        "+46 700 000 000 ext 12",
        "+46700000000#",
        "*46700000000",
        "+46/700000000",
        "46700000000|Hello",
        "tel:+46700000000",
        "call +46700000000 now",
        "0700000000",
        "+999123456789",
        "\uff0b46700000000",
        "\u0664\u0666\u0667\u0660\u0660\u0660\u0660\u0660\u0660\u0660\u0660",
        "+46\n700000000",
        "1" * 10_000,
    ],
)
def test_invalid_numbers_are_rejected_with_the_field_named(raw: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        to_e164(raw)
    assert caught.value.field == "to"
    assert caught.value.code == "invalid_phone"
    assert caught.value.status == 422


@pytest.mark.parametrize("raw", ["", "nope", "+12", "0700000000"])
def test_a_reject_names_the_field_it_was_given(raw: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        to_e164(raw, field="to[1]")
    assert caught.value.field == "to[1]"
    assert caught.value.code == "invalid_phone"


def test_a_reject_message_quotes_the_input() -> None:
    with pytest.raises(ValidationFailed, match="'\\+12'"):
        to_e164("+12")


def test_a_reject_message_shortens_a_huge_input() -> None:
    with pytest.raises(ValidationFailed) as caught:
        to_e164("9" * 10_000)
    assert len(caught.value.message) < 100


def test_a_reject_in_the_default_region_is_still_a_validation_failure() -> None:
    with pytest.raises(ValidationFailed):
        to_e164("0712", "SE")
