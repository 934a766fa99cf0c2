"""How every handler reads values out of provider answers and callbacks."""

from __future__ import annotations

import pytest

from handlers.base import WireRequest, WireResponse
from handlers.wire import (
    RETRY_AFTER_LIMIT,
    SNIPPET_CHARS,
    ErrorMeaning,
    as_float,
    as_int,
    as_text,
    describe_unreadable,
    digits_of,
    for_each,
    header,
    is_blank,
    json_api_get,
    json_api_headers,
    meanings_by_outcome,
    missing_from_answer,
    number_key,
    resolve_base,
    retry_after,
    same_number,
    same_subscriber,
    snippet,
    validity,
)
from service.model import Outcome, OutgoingSms, RecipientResult, SendBatch


def test_an_account_base_url_replaces_the_public_one_and_loses_its_trailing_slash() -> None:
    assert resolve_base("http://h:81/", "https://public") == "http://h:81"
    assert resolve_base("", "https://public/") == "https://public"


@pytest.mark.parametrize("value", [None, "", "   ", "\t\n"])
def test_nothing_and_white_space_are_blank(value: object) -> None:
    assert is_blank(value)


@pytest.mark.parametrize("value", [0, False, "0", " x ", [], {}])
def test_anything_else_is_not_blank(value: object) -> None:
    assert not is_blank(value)


@pytest.mark.parametrize(
    ("value", "number"),
    [(7, 7), (7.0, 7), ("004", 4), (" 12 ", 12), ("-3", -3), ("+3", 3)],
)
def test_an_integer_may_come_as_a_json_number_or_as_text(value: object, number: int) -> None:
    assert as_int(value) == number


@pytest.mark.parametrize("value", [True, False, None, 7.5, "7.5", "", "x", "1e3", [], {}])
def test_what_is_not_a_whole_number_is_no_integer(value: object) -> None:
    assert as_int(value) is None


def test_an_unsigned_integer_refuses_a_sign_for_formats_whose_codes_have_none() -> None:
    assert as_int("5", signed=False) == 5
    assert as_int("+5", signed=False) is None
    assert as_int("-5", signed=False) is None
    # JSON numbers are numbers whatever their sign; the sign rule is about text.
    assert as_int(-5, signed=False) == -5


@pytest.mark.parametrize(
    ("option", "remaining", "unit", "most", "sent"),
    [
        (None, 600, 60, None, 10),  # the message's own: whole minutes
        (5, 659, 60, None, 10),  # ...rounded down, never kept past its end
        (None, 30, 60, None, 1),  # ...at least one unit
        (None, 90_000, 1, 36_000, 36_000),  # ...at most the provider's longest
        ("45", None, 60, None, 45),  # else the account's option, in the provider's unit
        (5000, None, 60, 2880, 2880),
        (0, None, 60, None, None),  # an option of nothing sends none
        ("soon", None, 60, None, None),
        (None, None, 60, None, None),
    ],
)
def test_a_validity_is_the_messages_own_else_the_accounts(
    option: object, remaining: int | None, unit: int, most: int | None, sent: int | None
) -> None:
    assert validity(option, remaining, unit, most) == sent


@pytest.mark.parametrize(("value", "number"), [(2, 2.0), (2.5, 2.5), (" 2.5 ", 2.5), ("-1", -1.0)])
def test_a_decimal_may_come_as_a_json_number_or_as_text(value: object, number: float) -> None:
    assert as_float(value) == number


@pytest.mark.parametrize("value", [True, None, "", "x", "nan", "inf", float("inf"), [], {}])
def test_a_decimal_must_be_finite(value: object) -> None:
    assert as_float(value) is None


def test_a_scalar_becomes_text_and_a_container_nothing() -> None:
    assert as_text("  abc ") == "abc"
    assert as_text(42) == "42" and as_text(42.0) == "42" and as_text(4.5) == "4.5"
    assert as_text(None) == as_text(True) == as_text([1]) == as_text({"a": 1}) == ""


def test_a_message_body_keeps_its_spaces_when_asked() -> None:
    assert as_text("  hi  ", strip=False) == "  hi  "


def test_numbers_compare_by_their_digits_whatever_their_prefix() -> None:
    assert digits_of("+46 (70) 123-45") == "467012345"
    assert number_key("+46701") == number_key("0046701") == number_key("46701") == "46701"
    assert same_number("+46701", "0046701")
    assert not same_number("+46701", "+46702")
    assert not same_number("", "+")


@pytest.mark.parametrize(
    ("ours", "echoed"),
    [("+447700900123", "07700900123"), ("+919800000001", "9800000001"), ("4670123", "4670123")],
)
def test_a_number_echoed_without_its_country_code_is_the_same_subscriber(
    ours: str, echoed: str
) -> None:
    assert same_subscriber(ours, echoed)
    assert same_subscriber(echoed, ours)


@pytest.mark.parametrize(
    ("ours", "echoed"),
    [("+447700900123", "900123"), ("+447700900123", "07700900124"), ("", ""), ("+46", "46")],
)
def test_a_tail_shorter_than_a_subscriber_number_or_another_number_is_not(
    ours: str, echoed: str
) -> None:
    assert not same_subscriber(ours, echoed)


def test_codes_written_by_outcome_are_looked_up_by_code() -> None:
    table = meanings_by_outcome(
        {Outcome.ACCOUNT_ERROR: {"100": "no login"}, Outcome.REFUSED: {"102": "no text"}}
    )
    assert table == {
        "100": ErrorMeaning(Outcome.ACCOUNT_ERROR, "no login"),
        "102": ErrorMeaning(Outcome.REFUSED, "no text"),
    }


def test_a_header_is_found_in_any_case() -> None:
    assert header({"Retry-After": "3"}, "retry-after") == "3"
    assert header({"retry-after": "4"}, "retry-after") == "4"
    assert header({}, "retry-after") == ""


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("0", 0.0),
        ("2", 2.0),
        ("007", 7.0),
        ("1.5", 1.5),
        (" 3 ", 3.0),
        ("99999999999999999999", RETRY_AFTER_LIMIT),
        ("9" * 5000, RETRY_AFTER_LIMIT),  # past int()'s 4,300 digits
    ],
)
def test_retry_after_is_a_bounded_number_of_seconds(value: str, seconds: float) -> None:
    assert retry_after({"Retry-After": value}) == seconds


NOW = 1_700_000_000.0  # Tue, 14 Nov 2023 22:13:20 GMT


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("Tue, 14 Nov 2023 22:14:50 GMT", 90.0),
        ("Tuesday, 14-Nov-23 22:14:50 GMT", 90.0),
        ("Tue Nov 14 22:14:50 2023", 90.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
        ("Fri, 31 Dec 9999 23:59:59 GMT", RETRY_AFTER_LIMIT),
    ],
)
def test_retry_after_reads_an_http_date_in_any_of_its_forms(value: str, seconds: float) -> None:
    assert retry_after({"Retry-After": value}, now=NOW) == seconds


@pytest.mark.parametrize(
    "value",
    ["", "-1", "soon", "inf", "-inf", "nan", "Infinity", "1e400", "1e309", "٣", "+5",
     "Fri, 31 Dec 99999 23:59:59 GMT"],
)  # fmt: skip
def test_retry_after_leaves_odd_values_to_the_dispatchers_backoff(value: str) -> None:
    assert retry_after({"retry-after": value}) is None


def test_a_snippet_drops_tags_folds_space_and_stays_short() -> None:
    assert snippet("<html><b>Bad</b>\n\n  request</html>") == "Bad request"
    assert len(snippet("x" * 1000)) == SNIPPET_CHARS


def test_an_unreadable_answer_is_described_empty_unreadable_or_unexpected() -> None:
    empty = WireResponse(502, b"  ")
    html = WireResponse(502, b"<h1>Bad gateway</h1>")
    assert describe_unreadable("Acme", empty, None) == "empty answer from Acme (HTTP 502)"
    assert describe_unreadable("Acme", html, None) == (
        "unreadable answer from Acme (HTTP 502): Bad gateway"
    )
    assert describe_unreadable("Acme", html, {"odd": 1}) == (
        "unexpected answer from Acme (HTTP 502): Bad gateway"
    )


def test_a_recipient_missing_from_the_answer_is_refused() -> None:
    result = missing_from_answer(WireResponse(200, b"{}"), "Acme's answer: no ID")
    assert result == RecipientResult(
        Outcome.REFUSED, error_code="200", error_text="missing from Acme's answer: no ID"
    )


def test_one_result_can_stand_for_every_message_of_a_batch() -> None:
    messages = tuple(OutgoingSms(f"m{n}", "+46701", "hi", "S", "GSM-7", 1) for n in range(3))
    result = RecipientResult(Outcome.TRANSIENT)
    assert for_each(SendBatch(messages, "", dlr_url=""), result) == [result] * 3


def test_json_api_headers_carry_the_authorization_and_a_content_type_for_a_body() -> None:
    assert json_api_headers("App k", json_body=False) == {
        "Authorization": "App k",
        "Accept": "application/json",
    }
    assert json_api_headers("k", json_body=True)["Content-Type"] == "application/json"


def test_a_json_api_look_up_is_a_get_with_the_authorization_and_no_body_type() -> None:
    assert json_api_get("https://h/x", "App k", params=(("id", "1"),)) == WireRequest(
        "GET",
        "https://h/x",
        params=(("id", "1"),),
        headers={"Authorization": "App k", "Accept": "application/json"},
    )
