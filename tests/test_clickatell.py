"""Clickatell: the handler against the Platform API's wire format, the fake, the whole loop.

The first part feeds the handler the shapes of Clickatell's Platform SMS API (the
documented ones, the official SDKs' fixtures and variants seen in real traffic) with
no server at all. The second part serves `FakeClickatell` on loopback and drives it
with the handler's own requests. The third runs a real smsgw against the fake.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import strategies as st

from handlers.base import CallbackRequest, WireResponse
from handlers.clickatell import ClickatellHandler
from service.model import Account, InboundSms, Outcome, SendBatch, Status
from tests import rig as rigging
from tests import wire
from tests.conftest import Gateway
from tests.fake_clickatell import ERRORS, STATUS_NAMES, FakeClickatell

API_KEY = "kVz3-Qm9pL2xA8wT0bYc1g=="
BASE = "http://clickatell.test"
handler = ClickatellHandler()
ACCOUNT = Account(
    name="click", provider="clickatell", credentials={"api_key": API_KEY}, sender="ACME"
)


def batch(
    *numbers: str, text: str = "Hello", sender: str = "ACME", base_url: str = BASE
) -> SendBatch:
    messages = wire.outgoing(numbers, text, sender)
    return SendBatch(messages, base_url, dlr_url="")


def entry(to: str, message_id: str | None = None, code: int | None = None) -> dict[str, Any]:
    """One entry of a send answer, in the documented shape."""
    if code is None:
        return {
            "apiMessageId": message_id,
            "accepted": True,
            "to": to,
            "errorCode": None,
            "error": None,
            "errorDescription": None,
        }
    error, description, _ = ERRORS[code]
    return {
        "apiMessageId": "",
        "accepted": False,
        "to": to,
        "errorCode": code,
        "error": error,
        "errorDescription": description,
    }


def send_answer(*entries: dict[str, Any], code: int | None = None) -> dict[str, Any]:
    error, description = (ERRORS[code][0], ERRORS[code][1]) if code else (None, None)
    return {
        "messages": list(entries),
        "errorCode": code,
        "error": error,
        "errorDescription": description,
    }


def json_callback(body: Any, kind: str = "dlr") -> CallbackRequest:
    return wire.json_callback(f"http://gw/callbacks/click/{kind}", body)


def get_callback(fields: Mapping[str, Any], kind: str = "dlr") -> CallbackRequest:
    return wire.get_callback(f"http://gw/callbacks/click/{kind}", fields)


CALLBACK_FORMS = {"json": json_callback, "get": get_callback}
MESSAGE_ID = "af750c2dc53e4e4c88c39b3b48756d3a"


def status_callback(**changes: Any) -> dict[str, Any]:
    """A status callback with the fields of Clickatell's current SMS callback reference."""
    fields: dict[str, Any] = {
        "integrationName": "smsgw",
        "messageId": MESSAGE_ID,
        "requestId": "4c1d0e3a-req",
        "clientMessageId": "m0",
        "to": "27999000001",
        "from": "ACME",
        "statusCode": 4,
        "status": "RECEIVED_BY_RECIPIENT",
        "statusDescription": "Received by recipient",
        "timestamp": 1506607698000,
    }
    return wire.changed(fields, changes)


def test_clickatell_signs_nothing_and_expects_no_particular_callback_answer() -> None:
    handler.authenticate(ACCOUNT, json_callback(status_callback()))  # raises nothing
    handler.authenticate(ACCOUNT, get_callback({"messageId": "A"}))
    assert handler.inbound_answer(ACCOUNT, "thanks") is None


# -- send requests -----------------------------------------------------------------


def test_one_message_is_posted_as_json_with_the_raw_key_and_digits_without_plus() -> None:
    request = handler.send_request(ACCOUNT, batch("+27999000001"))
    assert (request.method, request.url) == ("POST", f"{BASE}/messages")
    assert request.json == {
        "content": "Hello",
        "to": ["27999000001"],
        "from": "ACME",
        "clientMessageId": "m0",
    }
    assert request.headers["Authorization"] == API_KEY  # no "Bearer": the key itself
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Accept"] == "application/json"
    assert request.form is None and not request.params


def test_a_batch_lists_every_number_once_in_to_without_a_client_message_id() -> None:
    request = handler.send_request(
        ACCOUNT, batch("+27999000001", "+27999000002", "+27999000001", "+4670000003")
    )
    assert request.json == {
        "content": "Hello",
        "to": ["27999000001", "27999000002", "4670000003"],
        "from": "ACME",
    }


def test_a_numeric_sender_goes_as_digits_and_no_sender_means_no_from() -> None:
    numeric = handler.send_request(ACCOUNT, batch("+27999000001", sender="+12027530410"))
    assert numeric.json["from"] == "12027530410"
    anonymous = handler.send_request(ACCOUNT, batch("+27999000001", sender=""))
    assert "from" not in anonymous.json


def test_options_set_the_validity_period_and_can_drop_the_client_message_id() -> None:
    account = replace(ACCOUNT, options={"validity_period": 90, "client_message_id": False})
    request = handler.send_request(account, batch("+27999000001"))
    assert request.json["validityPeriod"] == 90
    assert "clientMessageId" not in request.json
    ignored = replace(ACCOUNT, options={"validity_period": "soon"})
    assert "validityPeriod" not in handler.send_request(ignored, batch("+27999000001")).json


def test_a_messages_own_validity_is_sent_in_whole_minutes_left() -> None:
    account = replace(ACCOUNT, options={"validity_period": 90})
    request = batch("+27999000001")
    for remaining, sent in ((30, 1), (3599, 59), (7200, 120)):
        valid = replace(request, messages=(replace(request.messages[0], validity=remaining),))
        assert handler.send_request(account, valid).json["validityPeriod"] == sent


SEND_URLS = [
    (batch("+27999000001", base_url="http://h:81/"), "http://h:81/messages"),
    (batch("+27999000001", base_url=""), "https://platform.clickatell.com/messages"),
]


# -- send answers ------------------------------------------------------------------


def test_the_documented_answer_accepts_each_number_with_its_api_message_id() -> None:
    body = send_answer(
        entry("27999000001", "af750c2dc53e4e4c88c39b3b48756d3a"),
        entry("27999000002", "abcdec2dc53e4e4c88c39b3b48756d3a"),
    )
    results = handler.parse_send_response(
        ACCOUNT, batch("+27999000001", "+27999000002"), wire.answer(202, body)
    )
    assert [r.request_ids for r in results] == [
        ("af750c2dc53e4e4c88c39b3b48756d3a",),
        ("abcdec2dc53e4e4c88c39b3b48756d3a",),
    ]
    assert {(r.outcome, r.status) for r in results} == {(Outcome.ACCEPTED, Status.SUBMITTED)}


def test_entries_map_back_by_number_whatever_their_order_or_plus() -> None:
    body = send_answer(
        entry("+27999000002", "B"), entry("0027999000001", "A"), entry("4670", code=105)
    )
    results = handler.parse_send_response(
        ACCOUNT, batch("+27999000001", "+4670", "+27999000002"), wire.answer(202, body)
    )
    assert [(r.outcome, r.request_ids) for r in results] == [
        (Outcome.ACCEPTED, ("A",)),
        (Outcome.REFUSED, ()),
        (Outcome.ACCEPTED, ("B",)),
    ]
    assert (results[1].error_code, results[1].error_text) == (
        "105",
        "Invalid destination address: The destination address is invalid",
    )


@pytest.mark.parametrize(
    ("number", "status", "body", "expected"),
    [
        pytest.param(
            "+27111111111",
            202,
            # clickatell-php's RestTest: no errorCode, only the error's text.
            b'{"messages":[{"apiMessageId":null,"accepted":false,"to":"27111111111",'
            b'"error":"Invalid destination address."}],"error":null}',
            (Outcome.REFUSED, "105", "Invalid destination address"),
            id="sdk-fixture-with-only-an-error-text-classified-by-that-text",
        ),
        pytest.param(
            "+27999000001",
            400,
            {"messages": [], "error": {"code": "301", "description": "No credit left"}},
            (Outcome.ACCOUNT_ERROR, "301", "No credit left"),
            id="error-nested-as-code-and-description-read-too",
        ),
    ],
)
def test_an_error_is_read_from_the_text_or_from_code_and_description(
    number: str, status: int, body: Any, expected: tuple[Outcome, str, str]
) -> None:
    [result] = handler.parse_send_response(ACCOUNT, batch(number), wire.answer(status, body))
    assert (result.outcome, result.error_code, result.error_text) == expected


def test_entries_without_to_map_back_by_position() -> None:
    body = {"messages": [{"apiMessageId": "A", "accepted": True}, {"apiMessageId": "B"}]}
    results = handler.parse_send_response(
        ACCOUNT, batch("+27999000001", "+27999000002"), wire.answer(202, body)
    )
    assert [r.request_ids for r in results] == [("A",), ("B",)]


def test_numbers_missing_from_the_answer_are_refused_saying_so() -> None:
    body = send_answer(entry("27999000002", "B"))
    results = handler.parse_send_response(
        ACCOUNT, batch("+27999000001", "+27999000002"), wire.answer(202, body)
    )
    assert [r.outcome for r in results] == [Outcome.REFUSED, Outcome.ACCEPTED]
    assert "missing" in results[0].error_text


def test_accepted_without_an_api_message_id_is_not_an_acceptance() -> None:
    body = send_answer(entry("27999000001", None))
    [result] = handler.parse_send_response(ACCOUNT, batch("+27999000001"), wire.answer(202, body))
    assert result.outcome is Outcome.REFUSED and "without an apiMessageId" in result.error_text


def test_a_repeated_number_is_sent_again_later_when_its_first_copy_was_accepted() -> None:
    body = send_answer(entry("27999000001", "A"), entry("27999000002", code=121))
    results = handler.parse_send_response(
        ACCOUNT,
        batch("+27999000001", "+27999000002", "+27999000001", "+27999000002"),
        wire.answer(202, body),
    )
    assert [r.outcome for r in results] == [
        Outcome.ACCEPTED,
        Outcome.REFUSED,
        Outcome.TRANSIENT,  # the copy of an accepted number goes in a later request
        Outcome.REFUSED,  # the copy of a refused number shares its refusal
    ]
    assert results[2].error_code == "duplicate" and results[2].request_ids == ()
    assert results[3].error_code == "121"


# Every documented Clickatell error code and what it means for a message.
ERROR_OUTCOMES: dict[int, Outcome] = {
    1: Outcome.ACCOUNT_ERROR,
    2: Outcome.ACCOUNT_ERROR,
    3: Outcome.ACCOUNT_ERROR,
    4: Outcome.ACCOUNT_ERROR,
    5: Outcome.ACCOUNT_ERROR,
    7: Outcome.ACCOUNT_ERROR,
    100: Outcome.REFUSED,
    101: Outcome.REFUSED,
    102: Outcome.REFUSED,
    103: Outcome.REFUSED,
    104: Outcome.REFUSED,
    105: Outcome.REFUSED,
    106: Outcome.SENDER_REJECTED,
    107: Outcome.REFUSED,
    108: Outcome.ACCOUNT_ERROR,
    109: Outcome.REFUSED,
    110: Outcome.REFUSED,
    111: Outcome.REFUSED,
    112: Outcome.REFUSED,
    113: Outcome.REFUSED,
    114: Outcome.ACCOUNT_ERROR,
    115: Outcome.REFUSED,
    116: Outcome.REFUSED,
    120: Outcome.REFUSED,
    121: Outcome.REFUSED,
    122: Outcome.REFUSED,
    123: Outcome.SENDER_REJECTED,
    128: Outcome.REFUSED,
    130: Outcome.ACCOUNT_ERROR,
    201: Outcome.REFUSED,
    202: Outcome.REFUSED,
    301: Outcome.ACCOUNT_ERROR,
    302: Outcome.ACCOUNT_ERROR,
    901: Outcome.TRANSIENT,
}


def test_the_error_table_covers_every_documented_code() -> None:
    assert set(ERROR_OUTCOMES) == set(ERRORS)


@pytest.mark.parametrize(("code", "outcome"), ERROR_OUTCOMES.items())
def test_every_error_code_in_an_entry_classifies_that_number(code: int, outcome: Outcome) -> None:
    body = send_answer(entry("27999000001", code=code), entry("27999000002", "B"))
    first, second = handler.parse_send_response(
        ACCOUNT, batch("+27999000001", "+27999000002"), wire.answer(202, body)
    )
    assert (first.outcome, first.error_code) == (outcome, f"{code:03d}")
    assert first.error_text.startswith(ERRORS[code][0])
    assert (second.outcome, second.request_ids) == (Outcome.ACCEPTED, ("B",))


@pytest.mark.parametrize(("code", "outcome"), ERROR_OUTCOMES.items())
def test_every_error_code_at_the_top_level_applies_to_every_message(
    code: int, outcome: Outcome
) -> None:
    http_status = ERRORS[code][2]
    response = wire.answer(http_status, send_answer(code=code), {"Retry-After": "2"})
    results = handler.parse_send_response(ACCOUNT, batch("+27999000001", "+27999000002"), response)
    assert [(r.outcome, r.error_code) for r in results] == [(outcome, f"{code:03d}")] * 2
    assert all(r.request_ids == () for r in results)
    expected_retry = 2.0 if outcome is Outcome.TRANSIENT else None
    assert {r.retry_after for r in results} == {expected_retry}


@pytest.mark.parametrize("code", [0, None])
def test_a_zero_or_null_error_code_is_no_error(code: int | None) -> None:
    body = {**send_answer(entry("27999000001", "A")), "errorCode": code}
    [result] = handler.parse_send_response(ACCOUNT, batch("+27999000001"), wire.answer(202, body))
    assert result.outcome is Outcome.ACCEPTED


@pytest.mark.parametrize(
    "case",
    [
        wire.refused(401, b"", Outcome.ACCOUNT_ERROR, "401", "empty answer", id="401"),
        wire.refused(402, {"messages": []}, Outcome.ACCOUNT_ERROR, "402", "HTTP 402", id="402"),
        wire.throttled(
            429,
            {"error": "Too many requests"},
            "429",
            "Too many requests",
            seconds="7",
            header="retry-after",
            id="429-retry-after",
        ),
        wire.RETRY_AFTER_PAST_DATE,
        wire.INTERNAL_ERROR,
        wire.BAD_GATEWAY_PAGE,
        wire.NOT_FOUND_PAGE,
        wire.refused(
            400,
            {"messages": [], "errorCode": 999, "error": "Something new"},
            Outcome.REFUSED,
            "999",
            "Something new",
            id="400-undocumented-code",
        ),
        wire.throttled(
            503,
            {"messages": [], "errorCode": 777},
            "777",
            "Clickatell error 777",
            seconds="3",
            id="503-undocumented-code",
        ),
        wire.OK_BUT_EMPTY,
        wire.refused_with_status(202, wire.HTML_PAGE, "unreadable", id="202-html-page"),
        wire.refused_with_status(202, [1, 2], "unexpected answer", id="202-list"),
        wire.refused_with_status(
            202, {"messages": "none"}, "missing", id="202-messages-not-a-list"
        ),
    ],
)
def test_every_error_answer_is_classified_for_each_message_without_raising(
    case: wire.Refusal,
) -> None:
    case.judge(handler, ACCOUNT, batch("+27999000001", "+27999000002"))


def test_acceptance_in_an_error_answer_is_not_trusted() -> None:
    body = send_answer(entry("27999000001", "A"), code=301)
    [result] = handler.parse_send_response(ACCOUNT, batch("+27999000001"), wire.answer(402, body))
    assert (result.outcome, result.error_code) == (Outcome.ACCOUNT_ERROR, "301")


_KEYS = ["messages", "apiMessageId", "accepted", "to", "errorCode", "error", "errorDescription"]


# Any answer to a send, with the batch and account it answers; the contract test
# parses it and asks `judge_any_answer` whether each result is one this provider may give.
ANY_SEND_ANSWER = wire.any_send_answer(
    st.lists(
        st.sampled_from(["+27999000001", "+27999000002", "+4670000003"]), min_size=1, max_size=4
    ).map(lambda numbers: batch(*numbers)),
    wire.bytes_or_json(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=True)
        | st.text(max_size=20)
        | st.sampled_from(["27999000001", "+27999000002", "true"]),
        _KEYS,
        fields=5,
        leaves=12,
    ),
    accounts=st.just(ACCOUNT),
)


# -- status callbacks --------------------------------------------------------------

# Every documented message status code, its name, and the normalized status.
STATUS_TABLE = [
    (code, name, status)
    for (code, name), status in wire.by_meaning(
        {
            Status.SUBMITTED: (
                (1, "MESSAGE_UNKNOWN"),
                (2, "MESSAGE_QUEUED"),
                (8, "MESSAGE_RECEIVED_BY_GATEWAY"),
                (11, "MESSAGE_SCHEDULED"),
            ),
            Status.ENROUTE: ((3, "DELIVERED_TO_GATEWAY"),),
            Status.DELIVERED: ((4, "RECEIVED_BY_RECIPIENT"),),
            Status.REJECTED: (
                (5, "ERROR_WITH_MESSAGE"),
                (13, "CLICKATELL_CANCELLED_MESSAGE_DELIVERY"),
            ),
            Status.UNDELIVERED: (
                (6, "USER_CANCELLED_MESSAGE_DELIVERY"),
                (7, "ERROR_DELIVERING_MESSAGE"),
                (9, "ROUTING_ERROR"),
            ),
            Status.EXPIRED: ((10, "MESSAGE_EXPIRED"),),
            Status.FAILED: (
                (12, "OUT_OF_CREDIT"),
                (14, "MAXIMUM_MT_LIMIT_EXCEEDED"),
            ),
        }
    )
]


def test_the_status_table_covers_every_documented_code() -> None:
    assert {code for code, _, _ in STATUS_TABLE} == set(STATUS_NAMES)
    assert all(STATUS_NAMES[code][0] == name for code, name, _ in STATUS_TABLE)


def variants(code: int, name: str) -> dict[str, dict[str, Any]]:
    """The status fields of one status in every revision and traffic variant."""
    description = STATUS_NAMES[code][1]
    return {
        "code-and-name": {"statusCode": code, "status": name, "statusDescription": description},
        "padded-code-text": {
            "statusCode": f"{code:03d}",
            "status": None,
            "statusDescription": description,
        },
        "bare-code-text": {"statusCode": str(code), "status": None, "statusDescription": None},
        "code-in-status": {"statusCode": None, "status": f"{code:03d}", "statusDescription": None},
        "name-only": {"statusCode": None, "status": name, "statusDescription": None},
        "name-in-description": {"statusCode": None, "status": None, "statusDescription": name},
        "description-only": {"statusCode": None, "status": None, "statusDescription": description},
    }


VARIANT_NAMES = list(variants(4, "RECEIVED_BY_RECIPIENT"))


@pytest.mark.parametrize("form", CALLBACK_FORMS)
@pytest.mark.parametrize("variant", VARIANT_NAMES)
@pytest.mark.parametrize(("code", "name", "status"), STATUS_TABLE)
def test_every_status_maps_in_every_field_variant_as_json_or_get(
    form: str, variant: str, code: int, name: str, status: Status
) -> None:
    fields = status_callback(**variants(code, name)[variant])
    [report] = handler.parse_dlr(ACCOUNT, CALLBACK_FORMS[form](fields))
    assert report.request_id == MESSAGE_ID
    assert report.recipient == "27999000001"
    assert report.status is status
    assert report.error_code == f"{code:03d}"
    assert report.error_text.startswith(name)


def test_a_description_that_adds_information_is_kept_with_the_name() -> None:
    fields = status_callback(
        statusCode=7, status="ERROR_DELIVERING_MESSAGE", statusDescription="Absent subscriber"
    )
    [report] = handler.parse_dlr(ACCOUNT, json_callback(fields))
    assert report.error_text == "ERROR_DELIVERING_MESSAGE: Absent subscriber"


def test_a_known_name_wins_over_a_code_that_disagrees() -> None:
    fields = status_callback(statusCode=2, status="RECEIVED_BY_RECIPIENT")
    [report] = handler.parse_dlr(ACCOUNT, json_callback(fields))
    assert (report.status, report.error_code) == (Status.DELIVERED, "004")
    assert "statusCode 2 disagrees" in report.error_text


def test_an_unknown_name_with_a_known_code_follows_the_code() -> None:
    fields = status_callback(statusCode=10, status="TIMED_OUT_SOMEWHERE", statusDescription=None)
    [report] = handler.parse_dlr(ACCOUNT, json_callback(fields))
    assert (report.status, report.error_code) == (Status.EXPIRED, "010")
    assert "TIMED_OUT_SOMEWHERE" in report.error_text


@pytest.mark.parametrize("code", [0, 15, 42, 999])
def test_undocumented_codes_can_never_finalize_a_message(code: int) -> None:
    fields = status_callback(statusCode=code, status=None, statusDescription="Whatever")
    [report] = handler.parse_dlr(ACCOUNT, json_callback(fields))
    assert (report.status, report.error_code) == (Status.ENROUTE, f"{code:03d}")
    assert report.error_text == f"unknown status code {code}: Whatever"


def test_older_revisions_id_and_number_fields_are_read() -> None:
    fields = status_callback(messageId=None, apiMessageId="legacy-1", to=None, toNumber="2781")
    [report] = handler.parse_dlr(ACCOUNT, json_callback(fields))
    assert (report.request_id, report.recipient) == ("legacy-1", "2781")
    older = {"apiMsgId": "central-1", "to": "2782", "status": "004"}
    [central] = handler.parse_dlr(ACCOUNT, get_callback(older))
    assert (central.request_id, central.status) == ("central-1", Status.DELIVERED)


def test_a_json_list_of_callbacks_gives_a_report_each() -> None:
    callbacks = [
        status_callback(),
        status_callback(messageId="other", statusCode=3, status=None, statusDescription=None),
    ]
    reports = handler.parse_dlr(ACCOUNT, json_callback(callbacks))
    assert [(r.request_id, r.status) for r in reports] == [
        (MESSAGE_ID, Status.DELIVERED),
        ("other", Status.ENROUTE),
    ]


def test_query_parameters_and_a_json_body_are_read_together() -> None:
    callback = replace(json_callback(status_callback(messageId=None)), query=(("messageId", "Q1"),))
    [report] = handler.parse_dlr(ACCOUNT, callback)
    assert (report.request_id, report.status) == ("Q1", Status.DELIVERED)


ONE_API_EVENT = {
    "integrationId": "abc",
    "integrationName": "smsgw",
    "event": {"messageStatusUpdate": [{"messageId": MESSAGE_ID, "statusCode": 4}]},
}


INVALID_DLRS = [
    *wire.unusable_ids(lambda **f: json_callback(status_callback(**f)), "messageId"),
    *wire.unusable_codes(lambda **f: json_callback(status_callback(**f)), "statusCode"),
    pytest.param(json_callback(status_callback(status={"code": 4})), id="status-object"),
    pytest.param(get_callback(status_callback(statusCode="x4")), id="get-status-code-text"),
    pytest.param(
        json_callback(status_callback(statusCode=None, status=None, statusDescription=None)),
        id="no-status-at-all",
    ),
    pytest.param(
        json_callback(status_callback(statusCode=None, status="GONE", statusDescription=None)),
        id="unknown-name-only",
    ),
    pytest.param(
        json_callback(
            status_callback(statusCode=None, status=None, statusDescription="Absent subscriber")
        ),
        id="free-text-description-only",
    ),
    pytest.param(json_callback(ONE_API_EVENT), id="one-api-event"),
    pytest.param(json_callback([]), id="empty-json-list"),
    pytest.param(json_callback(["junk"]), id="json-list-of-junk"),
    pytest.param(json_callback(b'{"messageId": "A", "statusCode": '), id="invalid-json"),
    pytest.param(json_callback(b"[1, 2"), id="invalid-json-list"),
    pytest.param(get_callback({}), id="empty-get"),
]


# -- reply (inbound) callbacks -----------------------------------------------------

REPLY = {
    "integrationName": "smsgw",
    "messageId": "e6b2b5bbd0d54a1b8e1c3c6b0c7f1a2e",
    "replyMessageId": MESSAGE_ID,
    "apiKey": API_KEY,
    "fromNumber": "27999000001",
    "toNumber": "27820000000",
    "timestamp": 1506607698000,
    "text": "Yes please",
    "charset": "UTF-8",
    "udh": "",
    "network": 1,
    "keyword": "YES",
}


@pytest.mark.parametrize("form", CALLBACK_FORMS)
def test_a_reply_callback_is_read_as_json_or_get(form: str) -> None:
    [sms] = handler.parse_inbound(ACCOUNT, CALLBACK_FORMS[form](REPLY, "inbound"))
    assert sms == InboundSms(
        "27999000001", "27820000000", "Yes please", "e6b2b5bbd0d54a1b8e1c3c6b0c7f1a2e"
    )


def test_reply_numbers_may_come_as_from_and_to_or_as_json_numbers() -> None:
    body = {**{k: v for k, v in REPLY.items() if k not in ("fromNumber", "toNumber")}}
    [sms] = handler.parse_inbound(
        ACCOUNT, json_callback({**body, "from": 27999000001, "to": "27820000000"})
    )
    assert (sms.sender, sms.recipient) == ("27999000001", "27820000000")


def test_reply_text_is_kept_exactly_even_when_empty_or_spaced() -> None:
    wire.assert_text_kept_exactly(
        handler, ACCOUNT, lambda text: json_callback({**REPLY, "text": text})
    )


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"fromNumber": None}, id="no-sender"),
        pytest.param({"text": None}, id="no-text"),
        pytest.param({"text": {"body": "x"}}, id="text-object"),
        pytest.param({"fromNumber": ["27"]}, id="sender-list"),
    ],
)
def test_a_reply_without_sender_or_text_is_invalid(changes: dict[str, Any]) -> None:
    body = wire.changed(REPLY, changes)
    wire.assert_inbound_invalid(handler, ACCOUNT, json_callback(body, "inbound"))


# -- polling and balance -----------------------------------------------------------


def test_a_poll_asks_the_status_look_up_for_the_first_id_with_the_raw_key() -> None:
    request = handler.poll_request(ACCOUNT, "http://h:81", ["A1", "B2"])
    assert request is not None
    assert (request.method, request.url) == ("GET", "http://h:81/public-client/message/status")
    assert list(request.params) == [("messageId", "A1")]
    assert request.headers["Authorization"] == API_KEY
    assert request.json is None and request.form is None


# An ID to poll and where the poll goes without the account's base URL.
POLL_HOSTS = [("A1", "https://platform.clickatell.com/public-client/message/status")]


@pytest.mark.parametrize(("code", "name", "status"), STATUS_TABLE)
def test_every_status_name_a_poll_answers_maps(code: int, name: str, status: Status) -> None:
    [report] = handler.parse_poll_response(ACCOUNT, ["A1"], wire.answer(200, {"status": name}))
    assert (report.request_id, report.status, report.error_code) == ("A1", status, f"{code:03d}")


def test_a_poll_answer_naming_its_message_id_is_trusted_over_the_question() -> None:
    body = {"messageId": "A1", "status": "DELIVERED_TO_GATEWAY", "statusCode": 3}
    [report] = handler.parse_poll_response(ACCOUNT, [], wire.answer(200, body))
    assert (report.request_id, report.status) == ("A1", Status.ENROUTE)


UNREADABLE_POLL_ANSWERS = [
    pytest.param(
        ["A1"], wire.answer(404, {"errorCode": 103, "error": "Unknown API message ID"}), id="404"
    ),
    pytest.param(["A1"], wire.answer(401, {"errorCode": 1}), id="401"),
    pytest.param(["A1"], wire.answer(200, wire.HTML_PAGE), id="html"),
    pytest.param(["A1"], wire.answer(200, {"status": "GONE"}), id="unknown-name"),
    pytest.param(["A1"], wire.answer(200, {}), id="no-status"),
    pytest.param([], wire.answer(200, {"status": "MESSAGE_QUEUED"}), id="no-id-anywhere"),
    pytest.param(["A1", "B2"], wire.answer(200, {"status": "MESSAGE_QUEUED"}), id="ambiguous-id"),
]


def test_the_balance_call_is_a_get_with_the_raw_key() -> None:
    request = wire.balance_call(
        handler, ACCOUNT, "http://h:81/", "GET", "http://h:81/public-client/balance"
    )
    assert request.headers["Authorization"] == API_KEY


@pytest.mark.parametrize("amount", [1234.5, "1234.5", 1234.50])
def test_the_balance_is_read_with_its_currency(amount: Any) -> None:
    balance = handler.parse_balance(
        ACCOUNT, wire.answer(200, {"balance": amount, "currency": "USD"})
    )
    assert (balance.amount, balance.currency) == (1234.5, "USD")


BALANCE_ERRORS = [
    pytest.param(wire.answer(401, send_answer(code=1)), "Authentication failed", id="401"),
    pytest.param(wire.answer(200, {"currency": "USD"}), "no numeric balance", id="no-balance"),
    pytest.param(wire.answer(200, {"balance": "lots"}), "no numeric balance", id="text-balance"),
    pytest.param(wire.answer(502, wire.HTML_PAGE), "Bad Gateway", id="502-html"),
]


# -- the fake over real HTTP -------------------------------------------------------


class Rig(rigging.Wiring[FakeClickatell]):
    def batch(self, *numbers: str, sender: str = "ACME") -> SendBatch:
        return batch(*numbers, sender=sender, base_url=self.base_url)

    async def send(self, sent: SendBatch, account: Account = ACCOUNT) -> WireResponse:
        return await self.execute(handler.send_request(account, sent))

    async def results(self, *numbers: str, account: Account = ACCOUNT) -> list[Any]:
        sent = self.batch(*numbers)
        return handler.parse_send_response(account, sent, await self.send(sent, account))

    async def reports(self) -> list[Any]:
        await self.fake.drain()
        return [r for call in self.receiver.calls for r in handler.parse_dlr(ACCOUNT, call)]


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    fake, receiver = FakeClickatell(API_KEY), rigging.Receiver(hidden={"key"})
    async with rigging.wired(Rig, fake, query="?key=s3cret", receiver=receiver) as rig:
        yield rig


async def test_a_single_send_is_accepted_by_the_fake_with_its_api_message_id(rig: Rig) -> None:
    [result] = await rig.results("+27999000001")
    assert result.outcome is Outcome.ACCEPTED
    [message_id] = result.request_ids
    assert len(message_id) == 32
    assert rig.fake.messages[message_id]["to"] == "27999000001"
    assert rig.fake.sent == [
        {"content": "Hello", "to": ["27999000001"], "from": "ACME", "clientMessageId": "m0"}
    ]


async def test_a_batch_send_gets_one_id_per_number_and_refuses_bad_numbers_alone(
    rig: Rig,
) -> None:
    results = await rig.results("+27999000001", "+4670", "+27999000002")
    assert [r.outcome for r in results] == [Outcome.ACCEPTED, Outcome.REFUSED, Outcome.ACCEPTED]
    assert results[1].error_code == "105"
    assert len({r.request_ids for r in results}) == 3
    assert rig.fake.sent[0]["to"] == ["27999000001", "4670", "27999000002"]


async def test_a_number_repeated_in_a_batch_goes_once_and_its_copy_is_retried(rig: Rig) -> None:
    results = await rig.results("+27999000001", "+27999000001")
    assert [r.outcome for r in results] == [Outcome.ACCEPTED, Outcome.TRANSIENT]
    assert rig.fake.sent[0]["to"] == ["27999000001"]
    [again] = await rig.results("+27999000001")
    assert again.outcome is Outcome.ACCEPTED


@pytest.mark.parametrize("key", ["nope", f"Bearer {API_KEY}", ""])
async def test_a_wrong_or_scheme_prefixed_key_is_an_account_error(rig: Rig, key: str) -> None:
    wrong = replace(ACCOUNT, credentials={"api_key": key})
    [result] = await rig.results("+27999000001", account=wrong)
    assert (result.outcome, result.error_code) == (Outcome.ACCOUNT_ERROR, "001")
    assert result.error_text.startswith("Authentication failed")
    assert rig.fake.sent == [] and rig.fake.requests_seen == 1


@pytest.mark.parametrize(("code", "outcome"), ERROR_OUTCOMES.items())
async def test_the_fakes_top_level_errors_reach_the_handler_classified(
    rig: Rig, code: int, outcome: Outcome
) -> None:
    rig.fake.error_next = [code]
    results = await rig.results("+27999000001", "+27999000002")
    assert [(r.outcome, r.error_code) for r in results] == [(outcome, f"{code:03d}")] * 2
    assert rig.fake.sent == []


async def test_refusals_per_number_and_unapproved_senders_are_told_apart(rig: Rig) -> None:
    rig.fake.number_errors = {"27999000002": 122}
    opted_out = await rig.results("+27999000001", "+27999000002")
    assert [(r.outcome, r.error_code) for r in opted_out] == [
        (Outcome.ACCEPTED, ""),
        (Outcome.REFUSED, "122"),
    ]
    rig.fake.sender_ids = {"APPROVED"}
    [rejected] = await rig.results("+27999000001")
    assert (rejected.outcome, rejected.error_code) == (Outcome.SENDER_REJECTED, "123")


async def test_429_and_503_are_retried_a_500_is_unknown_then_a_send_goes_through(rig: Rig) -> None:
    rig.fake.fail_next = [503, 429, 500]
    outcomes = []
    for _ in range(4):
        [result] = await rig.results("+27999000001")
        outcomes.append((result.outcome, result.error_code, result.retry_after))
    assert outcomes == [
        (Outcome.TRANSIENT, "901", 1.0),
        (Outcome.TRANSIENT, "429", 1.0),
        (Outcome.UNKNOWN, "500", None),
        (Outcome.ACCEPTED, "", None),
    ]
    assert rig.fake.requests_seen == 4 and len(rig.fake.sent) == 1


@pytest.mark.parametrize("fields", ["current", "legacy", "names"])
@pytest.mark.parametrize("fmt", ["json", "get"])
async def test_pushed_status_callbacks_reach_the_callback_and_parse(
    rig: Rig, fmt: str, fields: str
) -> None:
    rig.fake.dlr_format, rig.fake.dlr_fields = fmt, fields
    rig.fake.dlr_plan_for = lambda number: [3, 4] if number.endswith("1") else [2, 10]
    results = await rig.results("+27999000001", "+27999000002")
    first, second = (r.request_ids[0] for r in results)
    assert [(r.request_id, r.recipient, r.status) for r in await rig.reports()] == [
        (first, "27999000001", Status.ENROUTE),
        (first, "27999000001", Status.DELIVERED),
        (second, "27999000002", Status.SUBMITTED),
        (second, "27999000002", Status.EXPIRED),
    ]
    assert rig.fake.dlr_acks == [200] * 4


async def test_status_callbacks_can_race_ahead_of_the_send_answer(rig: Rig) -> None:
    rig.fake.dlr_before_response = True
    rig.fake.dlr_plan = [4]
    response = await rig.send(rig.batch("+27999000001", "+27999000002"))
    arrived_first = [handler.parse_dlr(ACCOUNT, c)[0].request_id for c in rig.receiver.calls]
    results = handler.parse_send_response(
        ACCOUNT, rig.batch("+27999000001", "+27999000002"), response
    )
    assert arrived_first == [r.request_ids[0] for r in results]


async def test_duplicated_pushes_and_failing_callbacks_are_visible(rig: Rig) -> None:
    rig.fake.duplicates, rig.fake.dlr_plan = 2, [4]
    await rig.results("+27999000001")
    assert len(await rig.reports()) == 3
    rig.receiver.status = 503
    assert await rig.fake.push_dlr("X1", "27999000001", 4) == 503
    assert rig.fake.dlr_acks[-1] == 503


async def test_polls_reflect_the_latest_status_and_a_final_one_sticks(rig: Rig) -> None:
    rig.fake.dlr_plan = [3, 7, 4]
    [result] = await rig.results("+27999000001")
    await rig.fake.drain()
    [message_id] = result.request_ids
    [report] = await rig.read_poll(handler, ACCOUNT, [message_id])
    assert (report.request_id, report.status, report.error_code) == (
        message_id,
        Status.UNDELIVERED,
        "007",
    )
    unknown = handler.poll_request(ACCOUNT, rig.base_url, ["0" * 32])
    assert unknown is not None
    missing = await rig.execute(unknown)
    assert missing.status_code == 404
    assert handler.parse_poll_response(ACCOUNT, ["0" * 32], missing) == []


async def test_the_balance_comes_from_the_fake_and_needs_the_key(rig: Rig) -> None:
    rig.fake.balance, rig.fake.currency = 99.25, "ZAR"
    balance = await rig.read_balance(handler, ACCOUNT)
    assert (balance.amount, balance.currency) == (99.25, "ZAR")
    wrong = replace(ACCOUNT, credentials={"api_key": "nope"})
    with pytest.raises(ValueError, match="Authentication failed"):
        await rig.read_balance(handler, wrong)


async def test_a_pushed_reply_reaches_the_callback_and_parses(rig: Rig) -> None:
    assert await rig.fake.push_inbound("27999000001", "27820000000", "Yes please") == 200
    [call] = rig.receiver.calls
    [sms] = handler.parse_inbound(ACCOUNT, call)
    assert (sms.sender, sms.recipient, sms.text) == ("27999000001", "27820000000", "Yes please")
    assert len(sms.provider_id) == 32


# -- the whole loop: smsgw against the fake ----------------------------------------

CLICKATELL = rigging.account_fields("click", "clickatell", {"api_key": API_KEY}, "ACME")


def clickatell_setup(
    tmp_path: Path, **settings: Any
) -> AbstractAsyncContextManager[tuple[Gateway, FakeClickatell]]:
    return rigging.provider_loop(tmp_path, FakeClickatell(API_KEY), CLICKATELL, **settings)


async def test_a_batch_ends_delivered_undelivered_and_refused_as_clickatell_reports(
    tmp_path: Path,
) -> None:
    async with clickatell_setup(tmp_path) as (gateway, fake):
        fake.dlr_plan_for = lambda number: [3, 4] if number.endswith("1") else [3, 7]
        fake.number_errors = {"46700000003": 121}
        sent = await gateway.send(
            to=["+46700000001", "+46700000002", "+46700000003"], text="hi", account="click"
        )
        statuses = await rigging.settle(gateway, fake, [m["id"] for m in sent])
        assert [statuses[m["id"]] for m in sent] == ["delivered", "undelivered", "failed"]
        assert len(fake.sent) == 1 and len(fake.sent[0]["to"]) == 3
        undelivered = await gateway.message(sent[1]["id"])
        assert undelivered["error"] == {
            "code": "007",
            "message": "ERROR_DELIVERING_MESSAGE",
        }
        refused = await gateway.message(sent[2]["id"])
        assert refused["error"]["code"] == "121" and refused["http_status"] == 202
        assert await rigging.account_counters(gateway, "click") == rigging.tally(
            requests=3, accepted=2, failed=1, delivered=1, undelivered=1
        )


async def test_reports_pushed_as_get_queries_keep_the_callback_key(tmp_path: Path) -> None:
    async with clickatell_setup(tmp_path) as (gateway, fake):
        fake.dlr_format, fake.dlr_fields = "get", "names"
        [message] = await gateway.send(to="+46700000001", text="get", account="click")
        assert (await rigging.settle(gateway, fake, [message["id"]]))[message["id"]] == "delivered"
        assert fake.dlr_acks == [200, 200]


async def test_a_number_twice_in_one_send_is_delivered_twice(tmp_path: Path) -> None:
    async with clickatell_setup(tmp_path) as (gateway, fake):
        sent = await gateway.send(
            to=["+46700000001", "+46700000001"], text="twice", account="click"
        )
        statuses = await rigging.settle(gateway, fake, [m["id"] for m in sent])
        assert set(statuses.values()) == {"delivered"}
        assert [body["to"] for body in fake.sent] == [["46700000001"], ["46700000001"]]


async def test_a_wrong_key_fails_the_message_as_an_account_error(tmp_path: Path) -> None:
    async with clickatell_setup(tmp_path) as (gateway, fake):
        fake.api_key = "rotated"
        [message] = await gateway.send(to="+46700000001", text="denied", account="click")
        assert (await rigging.settle(gateway, fake, [message["id"]]))[message["id"]] == "failed"
        detail = await gateway.message(message["id"])
        assert detail["http_status"] == 401 and detail["error"]["code"] == "001"
        assert (await rigging.account_counters(gateway, "click"))["failed"] == 1


async def test_no_credit_is_an_account_error_and_an_internal_error_is_retried(
    tmp_path: Path,
) -> None:
    async with clickatell_setup(tmp_path) as (gateway, fake):
        fake.error_next = [301]
        [broke] = await gateway.send(to="+46700000001", text="broke", account="click")
        assert (await rigging.settle(gateway, fake, [broke["id"]]))[broke["id"]] == "failed"
        assert (await gateway.message(broke["id"]))["error"]["code"] == "301"
        fake.error_next = [901]
        [retried] = await gateway.send(to="+46700000002", text="again", account="click")
        assert (await rigging.settle(gateway, fake, [retried["id"]]))[retried["id"]] == "delivered"
        assert (await gateway.message(retried["id"]))["attempts"] == 2


async def test_the_stored_provider_response_never_holds_the_api_key(tmp_path: Path) -> None:
    async with clickatell_setup(tmp_path) as (gateway, fake):
        _, detail = await rigging.send_one(gateway, fake, "click", "+46700000001", "secret?")
        assert "apiMessageId" in detail["http_response"]
        assert API_KEY not in json.dumps(detail)
        listed = (await gateway.api.get("/v1/accounts/click")).json()
        assert API_KEY not in json.dumps(listed)


async def test_replies_are_listed_and_the_balance_is_served(tmp_path: Path) -> None:
    async with clickatell_setup(tmp_path) as (gateway, fake):
        assert await fake.push_inbound("46700000001", "46700000099", "Hi there") == 200
        assert await rigging.listed_inbound(gateway) == ("+46700000001", "Hi there", "click")
        balance = (await gateway.api.get("/v1/balance/click")).json()
        assert balance == {"account": "click", "balance": 1234.5, "currency": "USD"}


AMBIGUOUS = rigging.Ambiguous(
    fake=lambda: FakeClickatell(API_KEY),
    account=CLICKATELL,
    late_report=lambda fake, to: fake.push_dlr(next(iter(fake.messages)), to, 4),
    by="reference",
)
"""A lost answer is found by its `clientMessageId` (see tests/test_ambiguous.py)."""
