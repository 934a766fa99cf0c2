"""Infobip: the handler against the documented wire format, the fake over HTTP, and
the whole loop through a running smsgw.

The first part feeds the handler the shapes of Infobip's API reference and of the
official SDKs' fixtures, with no server at all. The second serves `FakeInfobip` on
loopback and drives it with the handler's own requests. The third runs smsgw next
to the fake, which pushes its reports to the notifyUrl smsgw gave it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import strategies as st

from handlers.base import CallbackRequest, WireResponse
from handlers.infobip import InfobipHandler
from service.model import Account, InboundSms, Outcome, RecipientResult, SendBatch, Status
from tests import rig as rigging
from tests import wire
from tests.conftest import Gateway
from tests.databases import db_dump
from tests.fake_infobip import STATUSES, FakeInfobip, Plan

API_KEY = "003026bbc133714df1834b8638bb496e-8f4b3d9a-e931-478d-a994-28a725159ab9"
BASE = "https://xyz12.api.infobip.com"
DLR_URL = "http://gw.test/callbacks/ib/dlr?key=s3cret"
handler = InfobipHandler()
ACCOUNT = Account(name="ib", provider="infobip", credentials={"api_key": API_KEY}, sender="InfoSMS")


def batch(
    *numbers: str,
    text: str = "This is a sample message",
    sender: str = "InfoSMS",
    base_url: str = BASE,
    dlr_url: str = DLR_URL,
) -> SendBatch:
    messages = wire.outgoing(numbers, text, sender)
    return SendBatch(messages, base_url, dlr_url=dlr_url)


def callback(body: Any, content_type: str = "application/json") -> CallbackRequest:
    return wire.json_callback("http://gw/callbacks/ib/dlr?key=s3cret", body, content_type)


def status(group: int, group_name: str, status_id: int, name: str, text: str) -> dict[str, Any]:
    return {
        "groupId": group,
        "groupName": group_name,
        "id": status_id,
        "name": name,
        "description": text,
    }


PENDING_ACCEPTED = status(1, "PENDING", 26, "PENDING_ACCEPTED", "Message sent to next instance")
DELIVERED_TO_HANDSET = status(
    3, "DELIVERED", 5, "DELIVERED_TO_HANDSET", "Message delivered to handset"
)
NO_ERROR = {
    "groupId": 0,
    "groupName": "Ok",
    "id": 0,
    "name": "NO_ERROR",
    "description": "No Error",
    "permanent": False,
}


# -- send requests -----------------------------------------------------------------


def test_one_message_is_posted_as_the_documented_advanced_json_with_app_key_auth() -> None:
    request = handler.send_request(ACCOUNT, batch("+41793026727"))
    assert (request.method, request.url) == ("POST", f"{BASE}/sms/2/text/advanced")
    assert request.headers == {
        "Authorization": f"App {API_KEY}",
        "Accept": "application/json",
        "Content-Type": "application/json",
    }
    assert request.json == {
        "messages": [
            {
                "destinations": [{"to": "41793026727"}],
                "from": "InfoSMS",
                "text": "This is a sample message",
                "notifyUrl": DLR_URL,
                "notifyContentType": "application/json",
                "callbackData": "m0",  # our message ID, echoed in its reports
            }
        ]
    }
    assert request.form is None and not request.params


def test_a_batch_is_one_message_entry_with_a_destination_per_recipient_in_order() -> None:
    request = handler.send_request(ACCOUNT, batch("+41793026727", "+41793026834", "+4670000002"))
    [entry] = request.json["messages"]
    assert entry["destinations"] == [
        {"to": "41793026727"},
        {"to": "41793026834"},
        {"to": "4670000002"},
    ]
    assert "callbackData" not in entry  # one entry for all: it could name none of them


def test_without_a_sender_or_callback_url_those_fields_are_left_out() -> None:
    request = handler.send_request(ACCOUNT, batch("+41793026727", sender="", dlr_url=""))
    [entry] = request.json["messages"]
    assert set(entry) == {"destinations", "text", "callbackData"}


def test_options_ask_for_intermediate_reports_and_a_validity_period() -> None:
    account = replace(ACCOUNT, options={"intermediate_report": True, "validity_period": 720})
    [entry] = handler.send_request(account, batch("+41793026727")).json["messages"]
    assert entry["intermediateReport"] is True and entry["validityPeriod"] == 720


@pytest.mark.parametrize(
    ("reported", "sent"),
    [(99999, 2880), ("60", 60), (0, None), (-5, None), ("soon", None), (True, None), (1.5, None)],
)
def test_the_validity_period_is_capped_at_infobips_48_hours_and_nonsense_is_ignored(
    reported: Any, sent: int | None
) -> None:
    account = replace(ACCOUNT, options={"validity_period": reported})
    [entry] = handler.send_request(account, batch("+41793026727")).json["messages"]
    assert entry.get("validityPeriod") == sent


@pytest.mark.parametrize(("remaining", "sent"), [(1, 1), (119, 1), (3600, 60), (10**6, 2880)])
def test_a_messages_own_validity_is_sent_in_whole_minutes_left(remaining: int, sent: int) -> None:
    account = replace(ACCOUNT, options={"validity_period": 720})
    request = batch("+41793026727")
    valid = replace(request, messages=(replace(request.messages[0], validity=remaining),))
    [entry] = handler.send_request(account, valid).json["messages"]
    assert entry["validityPeriod"] == sent


@pytest.mark.parametrize("flag", [False, "false", "0", 0])
def test_intermediate_reports_stay_off_unless_asked_for(flag: Any) -> None:
    account = replace(ACCOUNT, options={"intermediate_report": flag})
    [entry] = handler.send_request(account, batch("+41793026727")).json["messages"]
    assert "intermediateReport" not in entry


SEND_URLS = [
    (batch("+41793026727", base_url="http://h:81/"), "http://h:81/sms/2/text/advanced"),
    (batch("+41793026727", base_url=""), "https://api.infobip.com/sms/2/text/advanced"),
]


# -- send answers ------------------------------------------------------------------

# The API reference's answer for one destination.
ONE_ENTRY: dict[str, Any] = {
    "messageId": "2250be2d4219-3af1-78856-aabe-1362af1edfd2",
    "status": PENDING_ACCEPTED,
    "to": "41793026727",
}
ONE_ANSWER = {"bulkId": "2034072219640523072", "messages": [ONE_ENTRY]}


def test_a_pending_accepted_answer_is_accepted_and_submitted_under_its_message_id() -> None:
    [result] = handler.parse_send_response(
        ACCOUNT, batch("+41793026727"), wire.answer(200, ONE_ANSWER)
    )
    wire.assert_accepted(result, ("2250be2d4219-3af1-78856-aabe-1362af1edfd2",), Status.SUBMITTED)


@pytest.mark.parametrize(
    ("reported", "expected"),
    [
        pytest.param(status(1, "PENDING", 7, "PENDING_ENROUTE", "x"), Status.ENROUTE, id="7"),
        pytest.param(status(1, "PENDING", 3, "PENDING_WAITING_DELIVERY", "x"), Status.ENROUTE),
        # The Java SDK's fixtures call ID 26 MESSAGE_ACCEPTED; one reference example
        # pairs it with the name PENDING_ENROUTE. The ID decides.
        pytest.param(status(1, "PENDING", 26, "MESSAGE_ACCEPTED", "x"), Status.SUBMITTED),
        pytest.param(status(1, "PENDING", 26, "PENDING_ENROUTE", "x"), Status.SUBMITTED),
        pytest.param(status(0, "ACCEPTED", 0, "ACCEPTED", "x"), Status.SUBMITTED, id="group0"),
        pytest.param(DELIVERED_TO_HANDSET, Status.ENROUTE, id="never-final-at-submission"),
    ],
)
def test_a_send_answer_says_submitted_or_en_route_never_final(
    reported: dict[str, Any], expected: Status
) -> None:
    body = {"messages": [{**ONE_ENTRY, "status": reported}]}
    [result] = handler.parse_send_response(ACCOUNT, batch("+41793026727"), wire.answer(200, body))
    assert (result.outcome, result.status) == (Outcome.ACCEPTED, expected)


def entry(
    number: str, message_id: str, reported: dict[str, Any] = PENDING_ACCEPTED
) -> dict[str, Any]:
    return {"to": number, "status": reported, "messageId": message_id}


def test_a_batch_answer_maps_back_by_position_even_for_a_repeated_number() -> None:
    sent = batch("+41793026727", "+41793026834", "+41793026727")
    body = {
        "bulkId": "B1",
        "messages": [
            entry("41793026727", "first"),
            entry("41793026834", "second"),
            entry("41793026727", "third"),
        ],
    }
    results = handler.parse_send_response(ACCOUNT, sent, wire.answer(200, body))
    assert [r.request_ids for r in results] == [("first",), ("second",), ("third",)]


def test_an_answer_in_another_order_maps_back_by_number_with_or_without_plus() -> None:
    sent = batch("+41793026727", "+41793026834")
    body = {"messages": [entry("+41793026834", "second"), entry("41793026727", "first")]}
    results = handler.parse_send_response(ACCOUNT, sent, wire.answer(200, body))
    assert [r.request_ids for r in results] == [("first",), ("second",)]


def test_the_v3_answers_destination_field_names_the_number_too() -> None:
    body = {
        "messages": [{"messageId": "v3", "status": PENDING_ACCEPTED, "destination": "41793026727"}]
    }
    [result] = handler.parse_send_response(ACCOUNT, batch("+41793026727"), wire.answer(200, body))
    assert result.request_ids == ("v3",)


def test_messages_missing_from_the_answer_are_refused_saying_so() -> None:
    sent = batch("+41793026727", "+41793026834", "+41793026999")
    body = {"messages": [entry("41793026834", "second")]}
    results = handler.parse_send_response(ACCOUNT, sent, wire.answer(200, body))
    assert [r.outcome for r in results] == [Outcome.REFUSED, Outcome.ACCEPTED, Outcome.REFUSED]
    assert "missing" in results[0].error_text


def test_an_entry_without_a_message_id_is_refused() -> None:
    body = {"messages": [{"to": "41793026727", "status": PENDING_ACCEPTED}]}
    [result] = handler.parse_send_response(ACCOUNT, batch("+41793026727"), wire.answer(200, body))
    assert (result.outcome, result.request_ids) == (Outcome.REFUSED, ())
    assert "no messageId" in result.error_text


def test_an_entry_naming_no_number_keeps_its_place() -> None:
    body = {"messages": [{"messageId": "only", "status": PENDING_ACCEPTED}]}
    [result] = handler.parse_send_response(ACCOUNT, batch("+41793026727"), wire.answer(200, body))
    assert result.request_ids == ("only",)


# Every documented SMS status at submission: what it means for that recipient.
SUBMISSION_TABLE = wire.by_meaning(
    {
        Outcome.ACCEPTED: (26, 7, 3, 2, 5),
        Outcome.REFUSED: (4, 9, 31, 15, 29, 8, 10, 14, 20, 23, 24, 25, 51, 52, 87, 100),
        Outcome.ACCOUNT_ERROR: (6, 12, 17, 18, 19),
        Outcome.SENDER_REJECTED: (11, 13),
        Outcome.TRANSIENT: (21,),
    }
)


def fake_status(status_id: int) -> dict[str, Any]:
    code = STATUSES[status_id]
    return status(code.group_id, code.group_name, status_id, code.name, code.description)


@pytest.mark.parametrize(("status_id", "outcome"), SUBMISSION_TABLE)
def test_every_documented_status_in_a_send_answer_is_classified_per_recipient(
    status_id: int, outcome: Outcome
) -> None:
    sent = batch("+41793026727", "+41793026834")
    body = {
        "messages": [
            entry("41793026727", "ok"),
            entry("41793026834", "x", fake_status(status_id)),
        ]
    }
    first, second = handler.parse_send_response(ACCOUNT, sent, wire.answer(200, body))
    assert first.outcome is Outcome.ACCEPTED
    assert second.outcome is outcome
    if outcome is Outcome.ACCEPTED:
        assert second.request_ids == ("x",)
    else:
        assert second.request_ids == ()
        assert second.error_code == STATUSES[status_id].name
        assert second.error_text == STATUSES[status_id].description


@pytest.mark.parametrize(
    ("reported", "outcome"),
    [
        pytest.param(status(5, "REJECTED", 999, "REJECTED_SOMETHING_NEW", "x"), Outcome.REFUSED),
        pytest.param(status(2, "UNDELIVERABLE", 998, "UNDELIVERABLE_NEW", "x"), Outcome.REFUSED),
        pytest.param(
            {"groupName": "REJECTED", "name": "REJECTED_INVALID_DESTINATION"}, Outcome.REFUSED
        ),
        pytest.param(
            {"name": "REJECTED_NOT_ENOUGH_CREDITS"}, Outcome.ACCOUNT_ERROR, id="name-only"
        ),
        pytest.param({"groupId": "5", "id": "13"}, Outcome.SENDER_REJECTED, id="ids-as-text"),
    ],
)
def test_unknown_ids_fall_back_to_their_group_and_names_or_text_ids_are_read(
    reported: dict[str, Any], outcome: Outcome
) -> None:
    body = {"messages": [entry("41793026727", "x", reported)]}
    [result] = handler.parse_send_response(ACCOUNT, batch("+41793026727"), wire.answer(200, body))
    assert result.outcome is outcome


def legacy(code: str, text: str, **extra: Any) -> dict[str, Any]:
    return {"requestError": {"serviceException": {"messageId": code, "text": text, **extra}}}


def api_error(code: str, text: str, *violations: tuple[str, str]) -> dict[str, Any]:
    return {
        "errorCode": code,
        "description": text,
        "action": "Check the syntax, violations and adjust the request.",
        "violations": [{"property": p, "violation": v} for p, v in violations],
        "resources": [],
    }


@pytest.mark.parametrize(
    "case",
    [
        wire.refused(
            400,
            legacy(
                "BAD_REQUEST",
                "Bad request",
                validationErrors={"messages[0].text": ["invalid text"]},
            ),
            Outcome.REFUSED,
            "BAD_REQUEST",
            "Bad request (messages[0].text: invalid text)",
            id="400-BAD_REQUEST-validation",
        ),
        wire.refused(
            400,
            legacy(
                "BAD_REQUEST", "Bad request", validationErrors={"messages[0].from": ["invalid"]}
            ),
            Outcome.SENDER_REJECTED,
            "BAD_REQUEST",
            "messages[0].from: invalid",
            id="400-BAD_REQUEST-on-sender",
        ),
        wire.refused(
            400,
            api_error(
                "E400", "Request cannot be processed.", ("messages[0].text", "Must not be null.")
            ),
            Outcome.REFUSED,
            "E400",
            "Request cannot be processed. (messages[0].text: Must not be null.)",
            id="400-E400-violations",
        ),
        wire.refused(
            400,
            api_error("E400", "Request cannot be processed.", ("messages[0].sender", "Invalid.")),
            Outcome.SENDER_REJECTED,
            "E400",
            "messages[0].sender: Invalid.",
            id="400-E400-on-sender",
        ),
        wire.refused(
            400,
            legacy("INVALID_ARGUMENT", "Invalid argument"),
            Outcome.REFUSED,
            "INVALID_ARGUMENT",
            "Invalid argument",
            id="400-INVALID_ARGUMENT-2015",
        ),
        wire.refused(
            400,
            legacy(
                "SVC0004",
                "No valid addresses provided in message part %1",
                variables=["Invalid recipient address: tel:+2250747"],
            ),
            Outcome.REFUSED,
            "SVC0004",
            "No valid addresses provided in message part Invalid recipient address",
            id="400-oneapi-variables",
        ),
        wire.refused(
            401,
            legacy("UNAUTHORIZED", "Invalid login details"),
            Outcome.ACCOUNT_ERROR,
            "UNAUTHORIZED",
            "Invalid login details",
            id="401-UNAUTHORIZED",
        ),
        wire.refused(
            401,
            api_error("E401", "The request lacks valid authentication credentials."),
            Outcome.ACCOUNT_ERROR,
            "E401",
            "lacks valid authentication",
            id="401-E401",
        ),
        wire.refused(
            403,
            legacy("FORBIDDEN", "Forbidden"),
            Outcome.ACCOUNT_ERROR,
            "FORBIDDEN",
            "Forbidden",
            id="403-FORBIDDEN",
        ),
        wire.refused(
            403,
            api_error("E403", "Insufficient permissions to access the requested resource."),
            Outcome.ACCOUNT_ERROR,
            "E403",
            "Insufficient permissions",
            id="403-E403",
        ),
        wire.refused(
            404,
            legacy("NOT_FOUND", "Not found"),
            Outcome.ACCOUNT_ERROR,
            "NOT_FOUND",
            "Not found",
            id="404-NOT_FOUND-wrong-base-url",
        ),
        wire.refused(404, wire.HTML_PAGE, Outcome.ACCOUNT_ERROR, "404", "Oops", id="404-html"),
        wire.throttled(
            429,
            legacy("TOO_MANY_REQUESTS", "Too many requests"),
            "TOO_MANY_REQUESTS",
            "Too many requests",
            seconds="7",
            id="429-TOO_MANY_REQUESTS",
        ),
        wire.past_date(
            429,
            api_error("E429", "Too many requests sent."),
            "E429",
            "Too many requests sent.",
            header="retry-after",
            id="429-E429-past-date",
        ),
        wire.refused(
            500,
            legacy("GENERAL_ERROR", "Something went wrong. Please contact support."),
            Outcome.UNKNOWN,
            "GENERAL_ERROR",
            "Something went wrong",
            id="500-GENERAL_ERROR",
        ),
        wire.refused(
            500,
            api_error("E500", "Something went wrong."),
            Outcome.UNKNOWN,
            "E500",
            "Something went wrong.",
            id="500-E500",
        ),
        wire.BAD_GATEWAY_PAGE,
        wire.throttled(503, b"", "503", "empty", seconds="2", id="503"),
        wire.refused(
            200,
            legacy("UNAUTHORIZED", "Invalid login details"),
            Outcome.ACCOUNT_ERROR,
            "UNAUTHORIZED",
            "Invalid login details",
            id="200-with-requestError",
        ),
        wire.refused(
            200,
            legacy("TOO_MANY_REQUESTS", "Too many requests"),
            Outcome.TRANSIENT,
            "TOO_MANY_REQUESTS",
            "Too many requests",
            id="200-with-throttling",
        ),
        wire.refused_with_status(418, {"weird": True}, "unexpected answer", id="418"),
        wire.OK_BUT_EMPTY,
        wire.refused_with_status(200, wire.HTML_PAGE, "unreadable", id="200-html"),
        wire.refused_with_status(
            200, {"bulkId": "B1"}, "no messages in Infobip's answer", id="200-without-messages"
        ),
        wire.refused_with_status(
            200, {"bulkId": "B1", "messages": []}, "no messages", id="200-empty-messages"
        ),
        wire.refused_with_status(200, [1, 2], "unexpected answer", id="200-list"),
    ],
)
def test_every_error_answer_is_classified_for_each_message_without_raising(
    case: wire.Refusal,
) -> None:
    case.judge(handler, ACCOUNT, batch("+41793026727", "+41793026834"))


def test_an_error_answers_action_is_kept_with_its_description() -> None:
    body = api_error("E400", "Request cannot be processed.")
    [result] = handler.parse_send_response(ACCOUNT, batch("+41793026727"), wire.answer(400, body))
    assert result.error_text.endswith("Check the syntax, violations and adjust the request.")


STATUS_OBJECTS = st.fixed_dictionaries(
    {},
    optional={
        "groupId": st.one_of(st.integers(-2, 7), st.text(max_size=3), st.none(), st.booleans()),
        "groupName": st.sampled_from(["PENDING", "REJECTED", "DELIVERED", "NOPE", ""]),
        "id": st.one_of(st.integers(-1, 120), st.text(max_size=3), st.floats(allow_nan=False)),
        "name": st.text(max_size=10),
    },
)
JSON_VALUES = wire.json_shapes(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12),
    ["messages", "to", "messageId", "status", "requestError", "errorCode"],
    fields=4,
    leaves=12,
)
ANSWER_BODIES = st.one_of(
    st.binary(max_size=200),
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    st.lists(
        st.fixed_dictionaries(
            {},
            optional={
                "to": st.sampled_from(["41793026720", "41793026721", "+41793026722", "", 5]),
                "messageId": st.one_of(st.text(max_size=8), st.integers(), st.none()),
                "status": st.one_of(STATUS_OBJECTS, JSON_VALUES),
            },
        ),
        max_size=4,
    ).map(lambda entries: json.dumps({"bulkId": "B", "messages": entries}).encode()),
)


# Any answer to a send, with the batch and account it answers; the contract test
# parses it and asks `judge_any_answer` whether each result is one this provider may give.
ANY_SEND_ANSWER = wire.any_send_answer(
    wire.numbered_batches(batch, "+4179302672", 3), ANSWER_BODIES, accounts=st.just(ACCOUNT)
)


def judge_any_answer(results: list[RecipientResult], status: int) -> None:
    for result in results:
        if result.outcome is Outcome.ACCEPTED:
            assert 200 <= status < 300
            assert len(result.request_ids) == 1 and all(result.request_ids)
            assert result.status in (Status.SUBMITTED, Status.ENROUTE)
        else:
            assert result.request_ids == ()


# -- delivery reports --------------------------------------------------------------


def dlr(reported: dict[str, Any] = DELIVERED_TO_HANDSET, **extra: Any) -> dict[str, Any]:
    """One result of the reference's delivery report (v2, what /sms/2 messages get)."""
    result: dict[str, Any] = {
        "bulkId": "BULK-ID-123-xyz",
        "messageId": "MESSAGE-ID-123-xyz",
        "to": "41793026727",
        "sentAt": "2019-11-09T16:00:00.000+0000",
        "doneAt": "2019-11-09T16:00:00.000+0000",
        "smsCount": 1,
        "callbackData": "callbackData",
        "price": {"pricePerMessage": 0.01, "currency": "EUR"},
        "status": reported,
        "error": NO_ERROR,
        "entityId": "promotional-traffic-entity",
        "applicationId": "marketing-automation-application",
    }
    return wire.changed(result, extra)


DELIVERY_TABLE = [
    *wire.by_meaning(
        {
            Status.SUBMITTED: (26,),
            Status.ENROUTE: (7, 3, 2),
            Status.DELIVERED: (5,),
            Status.REJECTED: (4,),
            Status.UNDELIVERED: (9, 31),
            Status.EXPIRED: (15, 29),
        }
    ),
    *((status_id, Status.REJECTED) for status_id, code in STATUSES.items() if code.group_id == 5),
]


@pytest.mark.parametrize(
    "table", [SUBMISSION_TABLE, DELIVERY_TABLE], ids=["submission", "delivery"]
)
def test_each_table_covers_every_status_the_fake_knows(table: list[tuple[int, Any]]) -> None:
    wire.assert_covers(table, STATUSES)


@pytest.mark.parametrize(("status_id", "expected"), DELIVERY_TABLE)
def test_every_documented_status_maps_in_a_delivery_report(
    status_id: int, expected: Status
) -> None:
    [report] = handler.parse_dlr(ACCOUNT, callback({"results": [dlr(fake_status(status_id))]}))
    assert report.request_id == "MESSAGE-ID-123-xyz"
    assert report.recipient == "41793026727"
    assert report.status is expected
    assert report.error_code == STATUSES[status_id].name
    assert report.error_text == STATUSES[status_id].description


@pytest.mark.parametrize(
    ("group", "name", "expected"),
    [
        (0, "ACCEPTED", Status.SUBMITTED),
        (1, "PENDING", Status.ENROUTE),
        (2, "UNDELIVERABLE", Status.UNDELIVERED),
        (3, "DELIVERED", Status.DELIVERED),
        (4, "EXPIRED", Status.EXPIRED),
        (5, "REJECTED", Status.REJECTED),
    ],
)
def test_an_unknown_status_id_takes_its_groups_meaning_by_group_id_or_name(
    group: int, name: str, expected: Status
) -> None:
    by_id = status(group, "whatever", 4242, "SOMETHING_NEW", "New")
    by_name: dict[str, Any] = {"groupName": name.lower(), "id": 4242, "name": "SOMETHING_NEW"}
    for reported in (by_id, by_name):
        [report] = handler.parse_dlr(ACCOUNT, callback({"results": [dlr(reported)]}))
        assert (report.status, report.error_code) == (expected, "SOMETHING_NEW")


def test_the_group_id_decides_when_it_disagrees_with_the_id() -> None:
    # SIGNALS_BLOCKED (87) is documented under both EXPIRED and REJECTED.
    reported = status(4, "EXPIRED", 87, "SIGNALS_BLOCKED", "Rejected by anti-fraud")
    [report] = handler.parse_dlr(ACCOUNT, callback({"results": [dlr(reported)]}))
    assert report.status is Status.EXPIRED


def test_delivered_to_operator_is_final_only_when_the_account_says_so() -> None:
    reported = status(3, "DELIVERED", 2, "DELIVERED_TO_OPERATOR", "Message delivered to operator")
    body = {"results": [dlr(reported)]}
    [default] = handler.parse_dlr(ACCOUNT, callback(body))
    assert default.status is Status.ENROUTE
    trusting = replace(ACCOUNT, options={"operator_delivery_final": True})
    [final] = handler.parse_dlr(trusting, callback(body))
    assert final.status is Status.DELIVERED


def test_the_error_object_is_kept_with_the_status_description() -> None:
    reported = status(
        2, "UNDELIVERABLE", 9, "UNDELIVERABLE_NOT_DELIVERED", "Message sent not delivered"
    )
    error = status(1, "HANDSET_ERRORS", 27, "EC_ABSENT_SUBSCRIBER", "Absent Subscriber")
    error["permanent"] = False
    [report] = handler.parse_dlr(ACCOUNT, callback({"results": [dlr(reported, error=error)]}))
    assert report.status is Status.UNDELIVERED
    assert report.error_code == "UNDELIVERABLE_NOT_DELIVERED"
    assert report.error_text == (
        "Message sent not delivered; EC_ABSENT_SUBSCRIBER (27): Absent Subscriber"
    )


def test_a_permanent_error_says_so_even_as_json_text_like_the_java_sdk_fixture() -> None:
    reported = status(
        5, "REJECTED", 18, "REJECTED_DESTINATION_NOT_REGISTERED", "Destination not registered"
    )
    error = status(
        3,
        "OPERATOR_ERRORS",
        579,
        "EC_DEST_ADDRESS_NOT_IN_SMS_DEMO",
        "Destination address not in whitelist for SMS demo",
    )
    error["permanent"] = "true"
    [report] = handler.parse_dlr(ACCOUNT, callback({"results": [dlr(reported, error=error)]}))
    assert report.status is Status.REJECTED
    assert report.error_text.endswith("[permanent]")
    assert "EC_DEST_ADDRESS_NOT_IN_SMS_DEMO (579)" in report.error_text


def test_a_push_of_many_results_gives_one_report_each_in_order() -> None:
    body = {
        "results": [
            dlr(messageId="A", to="41793026727"),
            dlr(fake_status(15), messageId="B", to="41793026834", callbackData=None),
        ]
    }
    reports = handler.parse_dlr(ACCOUNT, callback(body))
    assert [(r.request_id, r.recipient, r.status) for r in reports] == [
        ("A", "41793026727", Status.DELIVERED),
        ("B", "41793026834", Status.EXPIRED),
    ]


def test_the_v3_report_shape_reads_the_same() -> None:
    result = dlr(smsCount=None, messageCount=1, sender="InfoSMS", platform={"entityId": "e"})
    [report] = handler.parse_dlr(ACCOUNT, callback({"results": [result]}))
    assert (report.request_id, report.status) == ("MESSAGE-ID-123-xyz", Status.DELIVERED)


def test_numeric_message_ids_and_a_missing_error_object_are_fine() -> None:
    [report] = handler.parse_dlr(
        ACCOUNT, callback({"results": [dlr(messageId=2033247207850523791, error=None)]})
    )
    assert report.request_id == "2033247207850523791"
    assert report.error_text == "Message delivered to handset"


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"results": [', id="invalid-json"),
        pytest.param([dlr()], id="json-array"),
        pytest.param({"result": [dlr()]}, id="no-results"),
        pytest.param({"results": []}, id="empty-results"),
        pytest.param({"results": dlr()}, id="results-not-a-list"),
        pytest.param({"results": ["junk"]}, id="result-not-an-object"),
        pytest.param({"results": [dlr(messageId=None)]}, id="missing-message-id"),
        pytest.param({"results": [dlr(messageId="  ")]}, id="blank-message-id"),
        pytest.param({"results": [dlr(messageId={"id": 1})]}, id="message-id-object"),
        pytest.param({"results": [dlr(status=None)]}, id="missing-status"),
        pytest.param({"results": [dlr(status="DELIVERED")]}, id="status-not-an-object"),
        pytest.param({"results": [dlr(status(9, "WHAT", 5, "X", "x"))]}, id="unknown-group"),
        pytest.param({"results": [dlr({"groupId": "abc", "id": 5})]}, id="group-id-text"),
        pytest.param({"results": [dlr({"groupId": True, "id": 5})]}, id="group-id-boolean"),
        pytest.param({"results": [dlr({"groupId": 3, "id": [5]})]}, id="id-list"),
        pytest.param({"results": [dlr({"name": "GONE", "groupName": "LOST"})]}, id="no-group"),
        pytest.param({"results": [dlr(error="NO_ERROR")]}, id="error-not-an-object"),
        pytest.param({"results": [dlr(), dlr(messageId=None)]}, id="one-bad-of-two"),
    ],
)
def test_a_report_infobip_would_never_send_is_invalid(body: Any) -> None:
    wire.assert_dlr_invalid(handler, ACCOUNT, callback(body))


def test_an_xml_report_is_invalid_because_smsgw_asks_for_json() -> None:
    xml = b"<DeliveryReports><results><result><messageId>M</messageId></result></results>"
    wire.assert_dlr_invalid(handler, ACCOUNT, callback(xml, "application/xml"), match="XML")


def test_infobip_callbacks_are_not_signed_and_want_no_body_back() -> None:
    handler.authenticate(ACCOUNT, callback({"results": [dlr()]}))  # raises nothing
    assert handler.inbound_answer(ACCOUNT, "auto reply") is None


# -- inbound SMS -------------------------------------------------------------------

# The reference's MO_JSON_2 inbound push.
MO: dict[str, Any] = {
    "messageId": "817790313235066447",
    "from": "385916242493",
    "to": "385921004026",
    "text": "QUIZ Correct answer is Paris",
    "cleanText": "Correct answer is Paris",
    "keyword": "QUIZ",
    "receivedAt": "2019-11-09T16:00:00.000+0000",
    "smsCount": 1,
    "price": {"pricePerMessage": 0, "currency": "EUR"},
    "callbackData": "callbackData",
}
INBOUND = {"results": [MO], "messageCount": 1, "pendingMessageCount": 1}


def test_an_inbound_push_gives_the_full_text_with_its_keyword() -> None:
    [sms] = handler.parse_inbound(ACCOUNT, callback(INBOUND))
    assert sms == InboundSms(
        "385916242493", "385921004026", "QUIZ Correct answer is Paris", "817790313235066447"
    )


def test_an_inbound_push_of_many_results_gives_each_with_text_kept_exactly() -> None:
    second = {**MO, "messageId": 2, "from": 385916242494, "text": " STOP \n"}
    body = {**INBOUND, "results": [MO, second]}
    first, other = handler.parse_inbound(ACCOUNT, callback(body))
    assert first.provider_id == "817790313235066447"
    assert (other.sender, other.text, other.provider_id) == ("385916242494", " STOP \n", "2")


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"results": [{**MO, "from": None}]}, id="no-from"),
        pytest.param({"results": [{**MO, "text": None}]}, id="no-text"),
        pytest.param({"results": [{**MO, "text": 42}]}, id="text-number"),
        pytest.param({"results": [], "messageCount": 0}, id="empty-results"),
        pytest.param([MO], id="bare-list"),
        pytest.param(b"from=385916242493&text=hi", id="form-body"),
    ],
)
def test_an_inbound_push_infobip_would_never_send_is_invalid(body: Any) -> None:
    wire.assert_inbound_invalid(handler, ACCOUNT, callback(body))


# -- polling and balance -----------------------------------------------------------


def test_a_poll_asks_the_logs_for_the_ids_comma_separated() -> None:
    request = handler.poll_request(ACCOUNT, "http://h:81", ["A1", " B2 ", "", "bad,id"])
    assert request is not None
    assert (request.method, request.url) == ("GET", "http://h:81/sms/3/logs")
    assert list(request.params) == [("messageId", "A1,B2"), ("limit", "2")]
    assert request.headers["Authorization"] == f"App {API_KEY}"
    assert request.json is None and request.form is None


def test_a_poll_takes_only_as_many_ids_as_fit_in_2048_characters() -> None:
    ids = [f"{i:035d}" for i in range(100)]  # 35 characters each
    request = handler.poll_request(ACCOUNT, BASE, ids)
    assert request is not None
    asked = dict(request.params)["messageId"]
    assert len(asked) <= 2048 and asked.split(",") == ids[:56]


# An ID to poll and where the poll goes without the account's base URL.
POLL_HOSTS = [("A1", "https://api.infobip.com/sms/3/logs")]


def test_an_id_with_a_comma_is_not_polled_as_it_would_read_as_two() -> None:
    assert handler.poll_request(ACCOUNT, BASE, ["a,b"]) is None


# The reference's /sms/3/logs answer (abridged to one entry) and a /sms/1/logs entry.
LOGS_V3 = {
    "results": [
        {
            "destination": "41793026727",
            "bulkId": "BULK-ID-123-xyz",
            "messageId": "MESSAGE-ID-123-xyz",
            "sentAt": "2019-11-09T16:00:00.000+0100",
            "doneAt": "2019-11-09T16:00:00.000+0100",
            "messageCount": 1,
            "price": {"pricePerMessage": 0.01, "currency": "EUR"},
            "status": DELIVERED_TO_HANDSET,
            "error": {**NO_ERROR, "groupName": "OK"},
            "platform": {"entityId": "e", "applicationId": "a"},
            "content": {"text": "This is a sample message"},
            "mccMnc": "22801",
        },
        {
            "destination": "41793026834",
            "messageId": "MESSAGE-ID-124-xyz",
            "status": fake_status(7),
            "error": NO_ERROR,
        },
    ]
}
LOG_V1 = {
    "bulkId": "BULK-ID-123-xyz",
    "messageId": "MESSAGE-ID-ijkl-45",
    "to": "41793026834",
    "sentAt": "2019-11-09T17:00:00.000+0000",
    "doneAt": "2019-11-09T17:00:00.000+0000",
    "smsCount": 1,
    "mccMnc": "22801",
    "price": {"pricePerMessage": 0.01, "currency": "EUR"},
    "status": fake_status(15),
    "error": NO_ERROR,
}


def test_a_logs_answer_gives_a_report_per_log_in_either_version() -> None:
    reports = handler.parse_poll_response(
        ACCOUNT, ["MESSAGE-ID-123-xyz"], wire.answer(200, LOGS_V3)
    )
    assert [(r.request_id, r.recipient, r.status) for r in reports] == [
        ("MESSAGE-ID-123-xyz", "41793026727", Status.DELIVERED),
        ("MESSAGE-ID-124-xyz", "41793026834", Status.ENROUTE),
    ]
    [old] = handler.parse_poll_response(ACCOUNT, [], wire.answer(200, {"results": [LOG_V1]}))
    assert (old.request_id, old.recipient, old.status) == (
        "MESSAGE-ID-ijkl-45",
        "41793026834",
        Status.EXPIRED,
    )


def test_unreadable_poll_answers_and_entries_give_no_reports() -> None:
    broken = {"results": [{"messageId": "X", "status": {"groupId": "x"}}, "junk", LOG_V1]}
    [kept] = handler.parse_poll_response(ACCOUNT, [], wire.answer(200, broken))
    assert kept.request_id == "MESSAGE-ID-ijkl-45"
    unauthorized = api_error("E401", "The request lacks valid authentication credentials.")
    assert handler.parse_poll_response(ACCOUNT, [], wire.answer(401, unauthorized)) == []
    assert handler.parse_poll_response(ACCOUNT, [], wire.answer(200, wire.HTML_PAGE)) == []
    assert handler.parse_poll_response(ACCOUNT, [], wire.answer(200, {"results": "none"})) == []


def test_the_balance_call_and_its_documented_answer() -> None:
    request = wire.balance_call(handler, ACCOUNT, BASE, "GET", f"{BASE}/account/1/balance")
    assert request.headers["Authorization"] == f"App {API_KEY}"
    balance = handler.parse_balance(
        ACCOUNT, wire.answer(200, {"balance": 47.79, "currency": "EUR"})
    )
    assert (balance.amount, balance.currency) == (47.79, "EUR")
    as_text = handler.parse_balance(
        ACCOUNT, wire.answer(200, {"balance": "12.5", "currency": "HRK"})
    )
    assert as_text.amount == 12.5


BALANCE_ERRORS = [
    (wire.answer(401, legacy("UNAUTHORIZED", "Invalid login details")), "UNAUTHORIZED"),
    (wire.answer(500, wire.HTML_PAGE), "HTTP 500"),
    (wire.answer(200, {"currency": "EUR"}), "no numeric balance"),
    (wire.answer(200, {"balance": "NaN"}), "no numeric balance"),
    (wire.answer(200, [47.79]), "unexpected answer"),
]


# -- the fake over real HTTP -------------------------------------------------------


class Rig(rigging.Wiring[FakeInfobip]):
    @property
    def dlr_url(self) -> str:
        """Infobip takes the report URL per message (`notifyUrl`), not from the fake."""
        return f"{self.receiver_url}/dlr?key=s3cret"

    def batch(self, *numbers: str, sender: str = "InfoSMS") -> SendBatch:
        return batch(*numbers, sender=sender, base_url=self.base_url, dlr_url=self.dlr_url)

    async def send(self, sent: SendBatch, account: Account = ACCOUNT) -> WireResponse:
        return await self.execute(handler.send_request(account, sent))

    async def results(self, sent: SendBatch, account: Account = ACCOUNT) -> list[Any]:
        return handler.parse_send_response(account, sent, await self.send(sent, account))

    def reports(self, account: Account = ACCOUNT) -> list[Any]:
        return [r for call in self.receiver.calls for r in handler.parse_dlr(account, call)]


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    async with rigging.wired(Rig, FakeInfobip(API_KEY), callbacks=("inbound",)) as rig:
        yield rig


async def test_a_send_is_accepted_with_infobips_message_id_and_recorded_as_sent(rig: Rig) -> None:
    sent = rig.batch("+41793026727")
    [result] = await rig.results(sent)
    assert (result.outcome, result.status) == (Outcome.ACCEPTED, Status.SUBMITTED)
    [message_id] = result.request_ids
    known = rig.fake.messages[message_id]
    assert (known["to"], known["from"], known["notifyUrl"]) == (
        "41793026727",
        "InfoSMS",
        rig.dlr_url,
    )
    assert rig.fake.sent == [handler.send_request(ACCOUNT, sent).json]


async def test_a_batch_with_a_bad_number_gets_per_destination_outcomes(rig: Rig) -> None:
    results = await rig.results(rig.batch("+41793026727", "+4179", "+41793026834"))
    assert [r.outcome for r in results] == [Outcome.ACCEPTED, Outcome.REFUSED, Outcome.ACCEPTED]
    assert results[1].error_code == "REJECTED_DESTINATION"
    [bulk] = rig.fake.bulks.values()
    assert len(bulk) == 3 and len(rig.fake.sent) == 1


async def test_a_wrong_api_key_is_an_account_error_and_nothing_is_sent(rig: Rig) -> None:
    wrong = replace(ACCOUNT, credentials={"api_key": "nope"})
    [result] = await rig.results(rig.batch("+41793026727"), wrong)
    assert (result.outcome, result.error_code) == (Outcome.ACCOUNT_ERROR, "UNAUTHORIZED")
    assert result.error_text == "Invalid login details"
    assert rig.fake.sent == [] and rig.fake.requests_seen == 1


async def test_a_blocked_sender_is_a_sender_rejection(rig: Rig) -> None:
    rig.fake.blocked_senders = {"Spammy"}
    [result] = await rig.results(rig.batch("+41793026727", sender="Spammy"))
    assert (result.outcome, result.error_code) == (Outcome.SENDER_REJECTED, "REJECTED_SENDER")


async def test_running_out_of_credit_is_an_account_error_for_the_rest(rig: Rig) -> None:
    rig.fake.credit, rig.fake.price = 0.015, 0.01
    results = await rig.results(rig.batch("+41793026727", "+41793026834"))
    assert [r.outcome for r in results] == [Outcome.ACCEPTED, Outcome.ACCOUNT_ERROR]
    assert results[1].error_code == "REJECTED_NOT_ENOUGH_CREDITS"


@pytest.mark.parametrize(("status_id", "outcome"), SUBMISSION_TABLE)
async def test_the_fake_answers_each_documented_submission_status_as_the_handler_expects(
    rig: Rig, status_id: int, outcome: Outcome
) -> None:
    rig.fake.status_for = lambda number: status_id
    [result] = await rig.results(rig.batch("+41793026727"))
    assert result.outcome is outcome


@pytest.mark.parametrize("shape", ["legacy", "api"])
@pytest.mark.parametrize(
    ("http", "outcome", "legacy_code", "api_code"),
    [
        (400, Outcome.REFUSED, "BAD_REQUEST", "E400"),
        (401, Outcome.ACCOUNT_ERROR, "UNAUTHORIZED", "E401"),
        (403, Outcome.ACCOUNT_ERROR, "FORBIDDEN", "E403"),
        (404, Outcome.ACCOUNT_ERROR, "NOT_FOUND", "E404"),
        (429, Outcome.TRANSIENT, "TOO_MANY_REQUESTS", "E429"),
        (500, Outcome.UNKNOWN, "GENERAL_ERROR", "E500"),
        (503, Outcome.TRANSIENT, "GENERAL_ERROR", "E500"),
    ],
)
async def test_planned_failures_answer_each_documented_error_code(
    rig: Rig, shape: str, http: int, outcome: Outcome, legacy_code: str, api_code: str
) -> None:
    rig.fake.error_shape = shape
    rig.fake.fail_next = [http]
    [result] = await rig.results(rig.batch("+41793026727"))
    assert result.outcome is outcome
    assert result.error_code == (legacy_code if shape == "legacy" else api_code)
    assert result.retry_after == (1.0 if http == 429 else None)
    assert rig.fake.sent == []


async def test_a_planned_failure_may_name_its_code_then_the_send_goes_through(rig: Rig) -> None:
    rig.fake.fail_next = [(400, "INVALID_ARGUMENT"), 503]
    sent = rig.batch("+41793026727")
    outcomes = [(await rig.results(sent))[0].outcome for _ in range(3)]
    assert outcomes == [Outcome.REFUSED, Outcome.TRANSIENT, Outcome.ACCEPTED]
    assert rig.fake.requests_seen == 3 and len(rig.fake.sent) == 1


async def test_a_malformed_request_gets_validation_errors(rig: Rig) -> None:
    request = handler.send_request(ACCOUNT, rig.batch("+41793026727"))
    broken = {"messages": [{**request.json["messages"][0], "text": " ", "from": ""}]}
    response = await rig.execute(replace(request, json=broken))
    [result] = handler.parse_send_response(ACCOUNT, rig.batch("+41793026727"), response)
    assert response.status_code == 400
    assert result.outcome is Outcome.SENDER_REJECTED  # one violation names the sender
    assert "messages[0].text: must not be blank" in result.error_text


async def test_a_hung_send_is_accepted_although_the_client_times_out(rig: Rig) -> None:
    rig.fake.hang_next = 1
    request = handler.send_request(ACCOUNT, rig.batch("+41793026727"))
    with pytest.raises(httpx.ReadTimeout):
        await rig.client.request(
            request.method,
            request.url,
            headers=dict(request.headers),
            json=request.json,
            timeout=0.2,
        )
    assert len(rig.fake.sent) == 1 and len(rig.fake.messages) == 1
    rig.fake.release_hung()


async def test_reports_go_to_the_notify_url_batched_under_results(rig: Rig) -> None:
    results = await rig.results(rig.batch("+41793026727", "+41793026834", "+41793026999"))
    await rig.fake.drain()
    [call] = rig.receiver.calls
    assert call.query == (("key", "s3cret"),)
    reports = rig.reports()
    assert [(r.request_id, r.status) for r in reports] == [
        (result.request_ids[0], Status.DELIVERED) for result in results
    ]
    assert rig.fake.dlr_acks == [200]


async def test_a_smaller_report_batch_size_splits_the_pushes(rig: Rig) -> None:
    rig.fake.dlr_batch_size = 2
    await rig.results(rig.batch("+41793026727", "+41793026834", "+41793026999"))
    await rig.fake.drain()
    assert [len(json.loads(c.body)["results"]) for c in rig.receiver.calls] == [2, 1]


async def test_pending_reports_come_only_when_intermediate_reports_were_asked_for(rig: Rig) -> None:
    rig.fake.dlr_plan = [7, 2, 5]
    await rig.results(rig.batch("+41793026727"))
    await rig.fake.drain()
    assert [r.error_code for r in rig.reports()] == [
        "DELIVERED_TO_OPERATOR",
        "DELIVERED_TO_HANDSET",
    ]
    rig.receiver.calls.clear()
    asking = replace(ACCOUNT, options={"intermediate_report": True})
    await rig.results(rig.batch("+41793026727"), asking)
    await rig.fake.drain()
    assert [r.status for r in rig.reports()] == [Status.ENROUTE, Status.ENROUTE, Status.DELIVERED]


async def test_failure_steps_carry_their_error_objects(rig: Rig) -> None:
    rig.fake.dlr_plan_for = lambda number: [9] if number.endswith("7") else [(15, 27)]
    await rig.results(rig.batch("+41793026727", "+41793026834"))
    await rig.fake.drain()
    undelivered, expired = rig.reports()
    assert undelivered.status is Status.UNDELIVERED
    assert "EC_UNKNOWN_SUBSCRIBER (1)" in undelivered.error_text
    assert undelivered.error_text.endswith("[permanent]")
    assert expired.status is Status.EXPIRED and "EC_ABSENT_SUBSCRIBER (27)" in expired.error_text


async def test_reports_can_race_ahead_of_the_send_answer(rig: Rig) -> None:
    rig.fake.dlr_before_response = True
    sent = rig.batch("+41793026727", "+41793026834")
    response = await rig.send(sent)
    arrived_first = [r.request_id for r in rig.reports()]
    results = handler.parse_send_response(ACCOUNT, sent, response)
    assert arrived_first == [r.request_ids[0] for r in results]


async def test_duplicated_and_shuffled_reports_arrive_as_planned(rig: Rig) -> None:
    rig.fake.duplicates, rig.fake.shuffle = 1, True
    rig.fake.dlr_plan_for = lambda number: [5] if number.endswith("7") else [9]
    results = await rig.results(rig.batch("+41793026727", "+41793026834"))
    await rig.fake.drain()
    first, second = (r.request_ids[0] for r in results)
    pushed = sorted((r.request_id, r.status.value) for r in rig.reports())
    assert pushed == sorted([(first, "delivered")] * 2 + [(second, "undelivered")] * 2)


async def test_messages_without_a_notify_url_report_to_the_accounts_webhook(rig: Rig) -> None:
    rig.fake.dlr_url = rig.dlr_url.replace("?key=s3cret", "?key=other")
    sent = batch("+41793026727", base_url=rig.base_url, dlr_url="")
    await rig.results(sent)
    await rig.fake.drain()
    [call] = rig.receiver.calls
    assert call.query == (("key", "other"),)


async def test_rejected_destinations_report_only_when_asked(rig: Rig) -> None:
    rig.fake.report_rejected = True
    [result] = await rig.results(rig.batch("+4179"))
    await rig.fake.drain()
    [report] = rig.reports()
    assert result.outcome is Outcome.REFUSED
    assert (report.status, report.error_code) == (Status.REJECTED, "REJECTED_DESTINATION")


async def test_a_failing_callback_is_recorded_in_the_acks(rig: Rig) -> None:
    [result] = await rig.results(rig.batch("+41793026727"))
    await rig.fake.drain()
    rig.receiver.status = 503
    assert await rig.fake.push_dlr(result.request_ids[0], 5) == 503
    assert rig.fake.dlr_acks == [200, 503]


async def test_polls_read_the_logs_as_the_statuses_advance(rig: Rig) -> None:
    rig.fake.push_reports = False
    rig.fake.dlr_plan_for = lambda number: [5] if number.endswith("7") else [(15, 27)]
    results = await rig.results(rig.batch("+41793026727", "+41793026834"))
    await rig.fake.drain()
    assert rig.receiver.calls == []
    ids = [r.request_ids[0] for r in results]
    request = handler.poll_request(ACCOUNT, rig.base_url, [*ids, "unknown-id"])
    assert request is not None
    reports = handler.parse_poll_response(ACCOUNT, ids, await rig.execute(request))
    assert [(r.request_id, r.status) for r in reports] == [
        (ids[0], Status.DELIVERED),
        (ids[1], Status.EXPIRED),
    ]
    assert rig.fake.log_queries == [[*ids, "unknown-id"]]


async def test_a_final_status_sticks_in_the_logs(rig: Rig) -> None:
    rig.fake.dlr_plan = [5, 9]
    [result] = await rig.results(rig.batch("+41793026727"))
    await rig.fake.drain()
    [message_id] = result.request_ids
    [report] = await rig.read_poll(handler, ACCOUNT, [message_id])
    assert report.status is Status.DELIVERED


async def test_a_poll_with_a_wrong_key_gets_nothing(rig: Rig) -> None:
    wrong = replace(ACCOUNT, credentials={"api_key": "nope"})
    request = handler.poll_request(wrong, rig.base_url, ["x"])
    assert request is not None
    response = await rig.execute(request)
    assert response.status_code == 401 and json.loads(response.body)["errorCode"] == "E401"
    assert handler.parse_poll_response(wrong, ["x"], response) == []


async def test_the_balance_falls_as_messages_are_accepted(rig: Rig) -> None:
    rig.fake.credit = 5.0
    await rig.results(rig.batch("+41793026727", "+41793026834"))
    request = handler.balance_request(ACCOUNT, rig.base_url)
    assert request is not None
    balance = handler.parse_balance(ACCOUNT, await rig.execute(request))
    assert (balance.amount, balance.currency) == (4.98, "EUR")
    wrong = replace(ACCOUNT, credentials={"api_key": "nope"})
    denied = await rig.execute(replace(request, headers={"Authorization": "App nope"}))
    with pytest.raises(ValueError, match="UNAUTHORIZED"):
        handler.parse_balance(wrong, denied)


async def test_a_pushed_inbound_sms_reaches_the_callback_and_parses(rig: Rig) -> None:
    status_code = await rig.fake.push_inbound(
        "385916242493", "385921004026", "QUIZ Paris", keyword="QUIZ", message_id="MO1"
    )
    assert status_code == 200
    [call] = rig.receiver.calls
    assert json.loads(call.body)["results"][0]["cleanText"] == "Paris"
    [sms] = handler.parse_inbound(ACCOUNT, call)
    assert sms == InboundSms("385916242493", "385921004026", "QUIZ Paris", "MO1")


# -- the whole loop through a running smsgw ----------------------------------------


def infobip_setup(
    tmp_path: Path,
    *,
    pattern: str = "batch",
    options: dict[str, Any] | None = None,
    **settings: Any,
) -> AbstractAsyncContextManager[tuple[Gateway, FakeInfobip]]:
    account = rigging.account_fields(
        "ib", "infobip", {"api_key": API_KEY}, "InfoSMS", pattern=pattern, options=options or {}
    )
    return rigging.provider_loop(tmp_path, FakeInfobip(API_KEY), account, **settings)


async def test_a_batch_send_is_one_request_and_ends_delivered_by_pushed_reports(
    tmp_path: Path,
) -> None:
    async with infobip_setup(tmp_path) as (gateway, fake):
        sent = await gateway.send(
            to=["+41793026727", "+41793026834", "+41793026999"], text="bulk", account="ib"
        )
        statuses = await rigging.settle(gateway, fake, [m["id"] for m in sent])
        assert set(statuses.values()) == {"delivered"}
        [request] = fake.sent
        [entry] = request["messages"]
        assert len(entry["destinations"]) == 3
        assert entry["notifyUrl"].startswith(gateway.url) and "key=" in entry["notifyUrl"]
        assert await rigging.account_counters(gateway, "ib") == rigging.tally(
            requests=3, accepted=3, delivered=3
        )
        detail = await gateway.message(sent[0]["id"])
        assert detail["request_id"] in fake.messages


async def test_undelivered_expired_and_rejected_reports_keep_infobips_codes(tmp_path: Path) -> None:
    outcomes: dict[str, Plan] = {"1": [9], "2": [(15, 27)], "3": [4], "4": [7, 5]}
    async with infobip_setup(tmp_path) as (gateway, fake):
        fake.dlr_plan_for = lambda number: outcomes[number[-1]]
        fake.duplicates, fake.shuffle = 1, True
        numbers = [f"+4179302{n:03d}{d}" for n in range(3) for d in "1234"]
        expected = {"1": "undelivered", "2": "expired", "3": "rejected", "4": "delivered"}
        sent = await rigging.settle_mixed(gateway, fake, "ib", numbers, expected)
        assert await rigging.account_counters(gateway, "ib") == rigging.tally(
            requests=12, accepted=12, delivered=3, undelivered=9
        )
        expired = await gateway.message(next(m["id"] for m in sent if m["to"].endswith("2")))
        assert expired["error"]["code"] == "EXPIRED_EXPIRED"
        assert "EC_ABSENT_SUBSCRIBER" in expired["error"]["message"]


async def test_a_number_infobip_refuses_fails_with_its_status_name(tmp_path: Path) -> None:
    async with infobip_setup(tmp_path) as (gateway, fake):
        fake.status_for = lambda number: 52 if number.endswith("9") else None
        sent = await gateway.send(to=["+41793026727", "+41793026729"], text="hi", account="ib")
        statuses = await rigging.settle(gateway, fake, [m["id"] for m in sent])
        assert [statuses[m["id"]] for m in sent] == ["delivered", "failed"]
        refused = await rigging.one_refused_one_delivered(
            gateway, "ib", sent[1]["id"], "REJECTED_DESTINATION"
        )
        assert refused["http_status"] == 200


async def test_a_wrong_api_key_fails_the_message_as_an_account_error(tmp_path: Path) -> None:
    async with infobip_setup(tmp_path) as (gateway, fake):
        fake.api_key = "rotated"
        status, detail = await rigging.send_one(gateway, fake, "ib", "+41793026727", "denied")
        assert status == "failed" and detail["http_status"] == 401
        assert detail["error"]["code"] == "UNAUTHORIZED"
        assert (await rigging.account_counters(gateway, "ib"))["failed"] == 1


async def test_a_429_is_retried_after_its_retry_after_then_delivered(tmp_path: Path) -> None:
    async with infobip_setup(tmp_path) as (gateway, fake):
        fake.fail_next = [429]
        status, detail = await rigging.send_one(gateway, fake, "ib", "+41793026727", "slow down")
        assert status == "delivered" and detail["attempts"] == 2
        assert fake.requests_seen == 2 and len(fake.sent) == 1


async def test_the_stored_provider_response_never_holds_the_api_key(tmp_path: Path) -> None:
    async with infobip_setup(tmp_path, pattern="loop") as (gateway, fake):
        _, detail = await rigging.send_one(gateway, fake, "ib", "+41793026727", "secret?")
        assert detail["http_response"] and "bulkId" in detail["http_response"]
        assert API_KEY not in str(detail)
        account = (await gateway.api.get("/v1/accounts/ib")).json()
        assert API_KEY not in json.dumps(account)
        dump = await db_dump(gateway.settings)
        assert API_KEY not in dump  # sealed at rest, even in the accounts table


async def test_an_account_that_polls_reaches_delivered_through_the_logs(tmp_path: Path) -> None:
    async with infobip_setup(tmp_path, options={"poll": True}, poll_first_after=0.05) as (
        gateway,
        fake,
    ):
        fake.push_reports = False
        [message] = await gateway.send(to="+41793026727", text="poll me", account="ib")
        statuses = await rigging.settle(gateway, fake, [message["id"]])
        assert statuses[message["id"]] == "delivered"
        detail = await gateway.message(message["id"])
        assert fake.log_queries and fake.log_queries[0] == [detail["request_id"]]
        assert fake.dlr_acks == []


async def test_inbound_messages_and_the_balance_are_served(tmp_path: Path) -> None:
    async with infobip_setup(tmp_path) as (gateway, fake):
        fake.credit = 47.79
        assert await fake.push_inbound("385916242493", "385921004026", "Hi there") == 200
        assert await rigging.listed_inbound(gateway) == ("+385916242493", "Hi there", "ib")
        balance = (await gateway.api.get("/v1/balance/ib")).json()
        assert balance == {"account": "ib", "balance": 47.79, "currency": "EUR"}


async def test_a_malformed_report_is_refused_and_nothing_is_stored(tmp_path: Path) -> None:
    async with infobip_setup(tmp_path) as (gateway, fake):
        assert fake.dlr_url is not None
        response = await gateway.raw.post(fake.dlr_url, json={"results": [{"to": "4179"}]})
        assert response.status_code == 422
        assert (await gateway.stats())["accounts"].get("ib", {}).get("unmatched", 0) == 0


AMBIGUOUS = rigging.Ambiguous(
    fake=lambda: FakeInfobip(API_KEY),
    account=rigging.account_fields("ib", "infobip", {"api_key": API_KEY}, "InfoSMS"),
    late_report=lambda fake, _to: fake.push_dlr(next(iter(fake.messages)), 5),
    by="reference",
)
"""A lost answer is found by its `callbackData` (see tests/test_ambiguous.py)."""
