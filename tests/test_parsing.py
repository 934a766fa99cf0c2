"""service.parsing: the one reader of outside JSON and numbers, and service.bounds."""

from __future__ import annotations

import json
import math
import re
from datetime import date
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service import bounds
from service.errors import CallbackInvalid, Unparseable
from service.model import InboundSms, Report, Status
from service.parsing import (
    MAX_DEPTH,
    check_tree,
    decode_json,
    float_of,
    int_of,
    json_float,
    json_int,
)

ASCII_INTEGER = re.compile(r"[0-9]{1,18}")
# Digits str.isdigit() takes that are not ASCII: other scripts' (Nd) and superscripts.
OTHER_DIGITS = st.characters(categories=["Nd", "No"]).filter(lambda c: not c.isascii())

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(exclude_categories=["Cs"])),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=20,
)


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@given(json_values)
def test_every_json_value_within_the_limits_reads_back_as_written(value: Any) -> None:
    assert decode_json(json.dumps(value).encode()) == value


@given(st.binary(max_size=200))
def test_any_bytes_are_read_or_refused_as_unparseable_never_a_crash(data: bytes) -> None:
    try:
        decode_json(data)
    except Unparseable as exc:
        assert exc.status == 400 and exc.field == "body"


@pytest.mark.parametrize(
    "text",
    ["NaN", "[NaN]", '{"a": Infinity}', "[-Infinity]", "[1e400]", "[-1e400]", '["\\ud800"]'],
)
def test_non_finite_numbers_and_lone_surrogates_are_not_json(text: str) -> None:
    with pytest.raises(Unparseable):
        decode_json(text)


def test_nesting_is_read_to_the_limit_and_refused_past_it_however_deep() -> None:
    assert decode_json(nested(MAX_DEPTH)) is not None
    for depth in (MAX_DEPTH + 1, 1_000, 30_000):
        with pytest.raises(Unparseable, match="deeper than"):
            decode_json(nested(depth))
    with pytest.raises(Unparseable):
        decode_json(b"[" * 30_000)  # unclosed, as the attack sent it
    deep_object = b'{"a":' * (MAX_DEPTH + 1) + b"1" + b"}" * (MAX_DEPTH + 1)
    with pytest.raises(Unparseable, match="deeper than"):
        decode_json(deep_object)


@pytest.mark.parametrize("number", [2**63, -(2**63) - 1, 10**30, 10**4_000])
def test_integers_past_64_bits_are_refused_wherever_they_are(number: int) -> None:
    for text in (str(number), f"[{number}]", f'{{"a": {{"b": [{number}]}}}}'):
        with pytest.raises(Unparseable):
            decode_json(text)
    with pytest.raises(Unparseable):
        decode_json("9" * 5_000)


def test_a_field_name_goes_into_the_refusal() -> None:
    with pytest.raises(Unparseable) as raised:
        decode_json("{", field="options")
    assert raised.value.field == "options" and "options" in raised.value.message


@given(st.text(max_size=25))
def test_int_of_takes_exactly_ascii_digits_of_bounded_length(text: str) -> None:
    expected = int(text) if ASCII_INTEGER.fullmatch(text) else None
    assert int_of(text) == expected


@given(OTHER_DIGITS, st.text("0123456789", max_size=3), st.text("0123456789", max_size=3))
def test_digits_of_other_scripts_are_no_number_anywhere(
    digit: str, before: str, after: str
) -> None:
    text = before + digit + after
    assert int_of(text) is None and int_of(text, signed=True) is None
    assert float_of(text) is None and json_int(text) is None and json_float(text) is None


def test_int_of_bounds_signs_and_ranges() -> None:
    assert int_of("-5") is None and int_of("-5", signed=True) == -5
    assert int_of("+", signed=True) is None and int_of("") is None
    assert int_of("0042") == 42
    assert int_of("1001", low=1, high=1000) is None and int_of("0", low=1) is None
    assert int_of("9" * 19) is None and int_of("9" * 5_000) is None


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_float_of_reads_every_finite_float_python_writes(number: float) -> None:
    assert float_of(repr(number)) == number


@pytest.mark.parametrize("text", ["nan", "inf", "-Infinity", "1_000", "1e400", " 1", "0x10", ""])
def test_float_of_refuses_what_python_float_takes_or_overflows(text: str) -> None:
    assert float_of(text) is None


def test_json_numbers_of_a_provider_are_read_within_64_bits() -> None:
    assert json_int(7) == 7 and json_int(" 007 ") == 7 and json_int(7.0) == 7
    assert json_int(True) is None and json_int(2**63) is None and json_int(1e300) is None
    assert json_int("+5", signed=False) is None
    assert json_float("2.5") == 2.5 and json_float(math.inf) is None and json_float(2**64) is None


@pytest.mark.parametrize(
    "value",
    [
        {"a": math.nan},
        {"a": [math.inf]},
        {"a": date(2026, 1, 1)},
        {1: "x"},
        {"a": 2**64},
        json.loads(nested(MAX_DEPTH + 1)),
    ],
)
def test_values_from_elsewhere_are_checked_to_be_plain_json(value: Any) -> None:
    with pytest.raises(Unparseable):
        check_tree(value if isinstance(value, dict | list) else [value], "options")


def test_report_fields_past_the_bounds_are_refused_and_long_error_text_cut() -> None:
    fine = Report("r" * bounds.IDENTIFIER, Status.DELIVERED, "+467000000000001", "e" * 64)
    assert bounds.checked_report(fine) == fine
    for changed in (
        Report("r" * (bounds.IDENTIFIER + 1), Status.DELIVERED),
        Report("r", Status.DELIVERED, "+4670000000000001"),
        Report("r", Status.DELIVERED, "4" * 60_000),
        Report("r", Status.DELIVERED, "", "e" * (bounds.ERROR_CODE + 1)),
    ):
        with pytest.raises(CallbackInvalid):
            bounds.checked_report(changed)
    cut = bounds.checked_report(Report("r", Status.UNDELIVERED, "", "1", "x" * 60_000))
    assert len(cut.error_text) == bounds.ERROR_TEXT and cut.error_text.endswith("…")


def test_inbound_fields_past_the_bounds_are_refused_whole() -> None:
    fine = InboundSms("ABCDEFGHIJK", "0046700000000001", "a" * bounds.MESSAGE_TEXT, "i" * 128)
    assert bounds.checked_inbound(fine) == fine
    for changed in (
        InboundSms("ABCDEFGHIJKL", "+46700000001", "hi"),
        InboundSms("+46700000001", "x" * (bounds.ADDRESS + 1), "hi"),
        InboundSms("+46700000001", "", "a" * (bounds.MESSAGE_TEXT + 1)),
        InboundSms("+46700000001", "", "hi", "i" * (bounds.IDENTIFIER + 1)),
    ):
        with pytest.raises(CallbackInvalid):
            bounds.checked_inbound(changed)
