"""Route Mobile SMSPLUS: the handler against the Bulk HTTP API's wire format, the fake
over HTTP, and the whole loop through a running smsgw.

The first part feeds the handler the shapes of the specification (v1.0.1) and of
answers seen in real traffic, with no server at all. The second serves
`FakeRouteMobile` on loopback and drives it with the handler's own requests. The third
runs smsgw with a Route Mobile account pointed at the fake, which pushes its reports to
the account's callback URL.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Collection, Mapping
from contextlib import asynccontextmanager
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from hypothesis import strategies as st

from handlers.base import WireResponse
from handlers.routemobile import CODES, DLR_STATUSES, RouteMobileHandler
from service.model import Account, Outcome, SendBatch, Status
from tests import rig as rigging
from tests import wire
from tests.conftest import Gateway
from tests.databases import db_dump
from tests.fake_routemobile import FakeRouteMobile

USERNAME = "acme-http"
PASSWORD = "Pw[9x!q&z"  # characters that change when URL-encoded
BASE = "http://rml.test:8080"
handler = RouteMobileHandler()
LOGIN = {"username": USERNAME, "password": PASSWORD}
ACCOUNT = Account(name="rm", provider="routemobile", credentials=LOGIN, sender="ACME")


def account(**options: Any) -> Account:
    return replace(ACCOUNT, options=options)


def batch(
    *numbers: str, text: str = "Hello", encoding: str = "GSM-7", base_url: str = BASE
) -> SendBatch:
    messages = wire.outgoing(numbers, text, "ACME", encoding)
    return SendBatch(messages, base_url, dlr_url="http://gw/callbacks/rm/dlr?key=k")


def answer(
    body: str | bytes, status: int = 200, headers: Mapping[str, str] | None = None
) -> WireResponse:
    """Route Mobile answers 200 with a text body, so the body comes first here."""
    return wire.answer(status, body, headers)


DLR_URL = "http://gw/callbacks/rm/dlr"


get_callback = partial(wire.get_callback, DLR_URL)


form_callback = partial(wire.form_callback, DLR_URL)


json_callback = partial(wire.json_callback, DLR_URL)


CALLBACK_FORMS = {"get": get_callback, "form": form_callback, "json": json_callback}
MESSAGE_ID = "b8c2e6a4-3f7d-4e21-9a0b-5c1d2e3f4a5b"


def dlr(status: Any = "DELIVRD", **changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "sSender": "ACME",
        "sMobileNo": "919800000001",
        "sStatus": status,
        "sMessageId": MESSAGE_ID,
        "dtSubmit": "2024-05-06 10:11:12",
        "dtDone": "2024-05-06 10:11:19",
        "iCostPerSms": "0.0200",
        "iCharge": "0.0200",
        "iMCCMNC": "40486",
        "iErrCode": "000",
        "sTagName": "",
        "sUdf1": "",
        "sUdf2": "",
    }
    return wire.changed(fields, changes)


# -- send requests -----------------------------------------------------------------


# The documented parameters, in order, with numbers written without their plus.
GET_SENDS = [
    (
        batch("+919800000001"),
        f"{BASE}/bulksms/bulksms",
        [
            ("username", USERNAME),
            ("password", PASSWORD),
            ("type", "0"),
            ("dlr", "1"),
            ("destination", "919800000001"),
            ("source", "ACME"),
            ("message", "Hello"),
        ],
    )
]


def test_a_batch_sends_its_numbers_comma_separated_in_batch_order() -> None:
    request = handler.send_request(
        ACCOUNT, batch("+919800000002", "+2348055494143", "+919800000001")
    )
    assert dict(request.params)["destination"] == "919800000002,2348055494143,919800000001"


def test_the_post_method_option_sends_the_same_fields_as_a_form() -> None:
    request = handler.send_request(account(method="post"), batch("+919800000001"))
    assert request.method == "POST"
    assert request.params == ()
    assert request.form is not None
    assert dict(request.form) == {
        "username": USERNAME,
        "password": PASSWORD,
        "type": "0",
        "dlr": "1",
        "destination": "919800000001",
        "source": "ACME",
        "message": "Hello",
    }
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"


SEND_URLS = [
    (batch("+91980", base_url="http://h:81/"), "http://h:81/bulksms/bulksms"),
    (batch("+91980", base_url=""), "https://api.rmlconnect.net/bulksms/bulksms"),
]


@pytest.mark.parametrize(
    ("option", "encoding", "expected"),
    [
        (None, "GSM-7", "0"),
        (None, "UCS-2", "2"),
        ("text", "GSM-7", "0"),
        ("text", "UCS-2", "2"),
        ("flash", "GSM-7", "1"),
        ("flash", "UCS-2", "6"),
        ("unicode", "GSM-7", "2"),
        ("unicode", "UCS-2", "2"),
        ("FLASH", "GSM-7", "1"),
        (0, "GSM-7", "0"),
        (1, "UCS-2", "6"),
        ("6", "GSM-7", "6"),
        ("wap-push", "GSM-7", "0"),
    ],
)
def test_the_type_follows_the_message_type_option_and_the_texts_encoding(
    option: Any, encoding: str, expected: str
) -> None:
    options = {} if option is None else {"message_type": option}
    request = handler.send_request(account(**options), batch("+91980", encoding=encoding))
    assert dict(request.params)["type"] == expected


@pytest.mark.parametrize(
    ("text", "hex_text"),
    [
        ("Hello", "00480065006C006C006F"),
        ("Привет", "041F04400438043204350442"),
        ("नमस्ते", "0928092E0938094D09240947"),
        ("ok 😀", "006F006B0020D83DDE00"),
    ],
)
def test_unicode_types_carry_the_text_as_utf16_big_endian_hex(text: str, hex_text: str) -> None:
    request = handler.send_request(ACCOUNT, batch("+91980", text=text, encoding="UCS-2"))
    assert dict(request.params)["type"] == "2"
    assert dict(request.params)["message"] == hex_text
    assert bytes.fromhex(hex_text).decode("utf-16-be") == text


def test_a_gsm_text_sent_as_unicode_is_hex_too() -> None:
    request = handler.send_request(account(message_type="unicode"), batch("+91980", text="Hi"))
    assert dict(request.params)["message"] == "00480069"


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, "1"), (1, "1"), (0, "0"), (True, "1"), (False, "0"), ("0", "0"), ("no", "0")],
)
def test_the_dlr_option_asks_for_reports_by_default(value: Any, expected: str) -> None:
    options = {} if value is None else {"dlr": value}
    assert dict(handler.send_request(account(**options), batch("+91980")).params)["dlr"] == (
        expected
    )


def test_india_dlt_ids_are_sent_when_the_account_has_them() -> None:
    options = {"entity_id": "1201159100000012345", "template_id": 1207161234567890123}
    params = list(handler.send_request(account(**options), batch("+91980")).params)
    assert params[-2:] == [("entityid", "1201159100000012345"), ("tempid", "1207161234567890123")]


# -- send answers ------------------------------------------------------------------


def test_a_success_answer_accepts_the_message_with_its_id() -> None:
    [result] = handler.parse_send_response(
        ACCOUNT, batch("+919800000001"), answer(f"1701|919800000001|{MESSAGE_ID}\n")
    )
    wire.assert_accepted(result, (MESSAGE_ID,), Status.SUBMITTED)


def test_the_older_number_colon_id_form_is_read_too() -> None:
    [result] = handler.parse_send_response(
        ACCOUNT, batch("+919443932288"), answer("1701|919443932288:4bb43bc6-1c2d-4e5f")
    )
    assert (result.outcome, result.request_ids) == (Outcome.ACCEPTED, ("4bb43bc6-1c2d-4e5f",))


def test_a_batch_answer_is_matched_back_by_number_whatever_its_order() -> None:
    body = "1701|919800000003|id-3,1701|919800000001|id-1,1701|919800000002|id-2"
    results = handler.parse_send_response(
        ACCOUNT, batch("+919800000001", "+919800000002", "+919800000003"), answer(body)
    )
    assert [r.request_ids for r in results] == [("id-1",), ("id-2",), ("id-3",)]


def test_a_real_mixed_answer_accepts_some_numbers_and_refuses_others() -> None:
    # Route Mobile's answer to a three-number batch, as a client library recorded it.
    body = "1701|2348055494143|3023779f-1722-4b7b-a3c8-d81f9e4bfc32,1706|23405"
    results = handler.parse_send_response(ACCOUNT, batch("+2348055494143", "+23405"), answer(body))
    assert results[0].request_ids == ("3023779f-1722-4b7b-a3c8-d81f9e4bfc32",)
    assert (results[1].outcome, results[1].error_code) == (Outcome.REFUSED, "1706")
    assert results[1].error_text == "invalid destination"


@pytest.mark.parametrize(
    ("body", "outcomes"),
    [
        (
            "1704|2348055494143,1704|23405,1704|234509",
            [Outcome.ACCOUNT_ERROR] * 3,
        ),
        (
            "1707|2348055494143,1706|23405,1707|234509",
            [Outcome.SENDER_REJECTED, Outcome.REFUSED, Outcome.SENDER_REJECTED],
        ),
    ],
)
def test_error_codes_given_per_number_apply_to_their_numbers(
    body: str, outcomes: list[Outcome]
) -> None:
    sent = batch("+2348055494143", "+23405", "+234509")
    assert [r.outcome for r in handler.parse_send_response(ACCOUNT, sent, answer(body))] == (
        outcomes
    )


def test_the_same_number_twice_gets_its_answers_in_order() -> None:
    body = "1701|919800000001|first,1701|919800000001|second"
    results = handler.parse_send_response(
        ACCOUNT, batch("+919800000001", "+919800000001"), answer(body)
    )
    assert [r.request_ids for r in results] == [("first",), ("second",)]


@pytest.mark.parametrize(
    "written",
    ["9800000001", "09800000001", "+919800000001", "00919800000001", " 919800000001 "],
)
def test_numbers_written_back_in_another_format_still_match(written: str) -> None:
    sent = batch("+919800000002", "+919800000001")
    body = f"1701|919800000002|id-2,1701|{written}|id-1"
    results = handler.parse_send_response(ACCOUNT, sent, answer(body))
    assert [r.request_ids for r in results] == [("id-2",), ("id-1",)]


def test_an_exact_number_wins_over_a_shorter_rendering_of_another() -> None:
    # 9800000001 could be 919800000001 without its country code; the exact one is
    # matched first so the shortened one goes to the message it really names.
    sent = batch("+449800000001", "+919800000001")
    body = "1701|9800000001|short,1701|449800000001|exact"
    results = handler.parse_send_response(ACCOUNT, sent, answer(body))
    assert [r.request_ids for r in results] == [("exact",), ("short",)]


def test_a_single_number_rewritten_beyond_recognition_still_pairs_with_its_message() -> None:
    [result] = handler.parse_send_response(
        ACCOUNT, batch("+919800000001"), answer("1701|555|only-id")
    )
    assert result.request_ids == ("only-id",)


def test_a_repeated_answer_for_one_number_is_not_given_to_another() -> None:
    body = "1701|919800000001|id-1,1701|919800000001|id-again"
    results = handler.parse_send_response(
        ACCOUNT, batch("+919800000001", "+447700900123"), answer(body)
    )
    assert results[0].request_ids == ("id-1",)
    assert (results[1].outcome, results[1].error_code) == (Outcome.REFUSED, "missing")


def test_running_out_of_credit_mid_batch_fails_the_rest_as_an_account_error() -> None:
    sent = batch("+919800000001", "+919800000002", "+919800000003")
    body = "1701|919800000001|id-1,1025|919800000002"
    results = handler.parse_send_response(ACCOUNT, sent, answer(body))
    assert [(r.outcome, r.error_code) for r in results] == [
        (Outcome.ACCEPTED, ""),
        (Outcome.ACCOUNT_ERROR, "1025"),
        (Outcome.ACCOUNT_ERROR, "1025"),
    ]


def test_a_bare_code_after_some_numbers_covers_the_numbers_not_mentioned() -> None:
    sent = batch("+919800000001", "+919800000002")
    results = handler.parse_send_response(ACCOUNT, sent, answer("1701|919800000001|id-1,1710"))
    assert [r.outcome for r in results] == [Outcome.ACCEPTED, Outcome.TRANSIENT]


def test_numbers_missing_from_an_answer_are_refused_saying_so() -> None:
    sent = batch("+919800000001", "+919800000002", "+919800000003")
    body = "1701|919800000002|id-2,1706|919800000001"
    results = handler.parse_send_response(ACCOUNT, sent, answer(body))
    assert [r.outcome for r in results] == [Outcome.REFUSED, Outcome.ACCEPTED, Outcome.REFUSED]
    assert results[2].error_code == "missing"
    assert "missing" in results[2].error_text


def test_success_without_a_message_id_is_not_an_acceptance() -> None:
    [result] = handler.parse_send_response(
        ACCOUNT, batch("+919800000001"), answer("1701|919800000001|")
    )
    assert (result.outcome, result.error_code) == (Outcome.REFUSED, "1701")
    assert "without a message ID" in result.error_text


def test_an_undocumented_code_is_refused_and_kept() -> None:
    [result] = handler.parse_send_response(ACCOUNT, batch("+91980"), answer("1799"))
    assert (result.outcome, result.error_code) == (Outcome.REFUSED, "1799")
    assert "unknown" in result.error_text


CODE_TABLE = wire.by_meaning(
    {
        Outcome.ACCOUNT_ERROR: ("1702", "1703", "1704", "1708", "1709", "1025", "1026"),
        Outcome.REFUSED: ("1705", "1706", "1032", "1028"),
        Outcome.SENDER_REJECTED: ("1707", "1033"),
        Outcome.TRANSIENT: ("1710",),
        Outcome.UNKNOWN: ("1715",),
    }
)


@pytest.mark.parametrize(("code", "outcome"), CODE_TABLE)
def test_every_documented_code_alone_classifies_every_message(code: str, outcome: Outcome) -> None:
    results = handler.parse_send_response(
        ACCOUNT, batch("+919800000001", "+919800000002"), answer(code)
    )
    assert [(r.outcome, r.error_code) for r in results] == [(outcome, code)] * 2
    assert all(r.error_text == CODES[code].text and r.request_ids == () for r in results)
    assert all(r.retry_after is None for r in results)


@pytest.mark.parametrize(("code", "outcome"), CODE_TABLE)
def test_every_documented_code_given_for_one_number_touches_only_that_number(
    code: str, outcome: Outcome
) -> None:
    sent = batch("+919800000001", "+919800000002")
    body = f"{code}|919800000001,1701|919800000002|id-2"
    results = handler.parse_send_response(ACCOUNT, sent, answer(body))
    assert (results[0].outcome, results[0].error_code) == (outcome, code)
    assert results[1].request_ids == ("id-2",)


def test_a_timeout_answer_is_an_unknown_outcome_because_the_message_may_have_gone() -> None:
    [result] = handler.parse_send_response(ACCOUNT, batch("+91980"), answer("1715"))
    assert result.outcome is Outcome.UNKNOWN
    assert "unknown" in result.error_text


HTML_PAGE = "<html><head><title>502 Bad Gateway</title></head><body><h1>nginx</h1></body></html>"


@pytest.mark.parametrize(
    "case",
    [
        wire.refused(500, "", Outcome.UNKNOWN, "500", "empty body", id="500"),
        wire.refused(502, HTML_PAGE, Outcome.UNKNOWN, "502", "Bad Gateway", id="502"),
        wire.throttled(503, "busy", "503", "busy", seconds="4", id="503"),
        wire.throttled(429, "", "429", "HTTP 429", seconds="2", header="retry-after", id="429"),
        wire.past_date(429, "", "429", "HTTP 429", id="429-past-date"),
        wire.UNAUTHORIZED,
        wire.refused(403, "", Outcome.ACCOUNT_ERROR, "403", "empty body", id="403"),
        wire.refused_with_status(404, HTML_PAGE, "nginx", id="404-html"),
        wire.refused(400, "1702", Outcome.ACCOUNT_ERROR, "1702", "missing", id="400-bare-code"),
        wire.refused_with_status(400, "1701|919800000001|x", "1701", id="400-success"),
        wire.refused_with_status(200, "", "empty body", id="200-empty"),
        wire.refused_with_status(200, HTML_PAGE, "nginx", id="200-html"),
        wire.refused_with_status(200, '{"status": "ok"}', "no answer code", id="json"),
    ],
)
def test_http_failures_and_unreadable_answers_are_classified_for_every_message(
    case: wire.Refusal,
) -> None:
    case.judge(handler, ACCOUNT, batch("+919800000001", "+919800000002"))


ANSWER_TEXT = st.text(alphabet="0123456789|,: \n17ab-", max_size=80)


# Any answer to a send, with the batch and account it answers; the contract test
# parses it and asks `judge_any_answer` whether each result is one this provider may give.
ANY_SEND_ANSWER = wire.any_send_answer(
    wire.numbered_batches(batch, "+91980000000", 4),
    st.one_of(
        st.binary(max_size=120),
        ANSWER_TEXT.map(str.encode),
        st.lists(
            st.tuples(
                st.sampled_from(["1701", *CODES, "17", "x"]),
                st.sampled_from(["", "919800000001", "919800000002", "9800000003", "+1"]),
                st.sampled_from(["", "id-1", "id:2"]),
            ),
            max_size=5,
        ).map(lambda items: ",".join("|".join(i) for i in items).encode()),
    ),
    accounts=st.just(ACCOUNT),
)

judge_any_answer = partial(wire.assert_accepted_only_on_2xx, says_why=True)


# -- delivery reports --------------------------------------------------------------

STATUS_TABLE = wire.by_meaning(
    {
        Status.ENROUTE: ("ACKED", "ACCEPTD", "ACCEPTED", "ENROUTE"),
        Status.DELIVERED: ("DELIVRD", "DELIVERED"),
        Status.UNDELIVERED: ("UNDELIV", "UNDELIVERED", "DELETED", "UNKNOWN"),
        Status.EXPIRED: ("EXPIRED",),
        Status.REJECTED: ("REJECTD", "REJECTED", "DND"),
        Status.FAILED: ("FAILED",),
    }
)


@pytest.mark.parametrize(
    ("table", "known"),
    [(CODE_TABLE, CODES), (STATUS_TABLE, DLR_STATUSES)],
    ids=["error-codes", "dlr-statuses"],
)
def test_each_table_covers_everything_the_handler_knows(
    table: list[tuple[str, Any]], known: Collection[str]
) -> None:
    wire.assert_covers(table, known)


@pytest.mark.parametrize("form", CALLBACK_FORMS)
@pytest.mark.parametrize(("name", "status"), STATUS_TABLE)
def test_every_route_mobile_status_maps_in_get_form_and_json_callbacks(
    form: str, name: str, status: Status
) -> None:
    [report] = handler.parse_dlr(ACCOUNT, CALLBACK_FORMS[form](dlr(name, iErrCode="069")))
    assert report.request_id == MESSAGE_ID
    assert report.recipient == "919800000001"
    assert report.status is status
    assert (report.error_code, report.error_text) == ("069", name)


@pytest.mark.parametrize("given_status", ["delivrd", "Delivrd", " DELIVRD "])
def test_status_case_and_spacing_drift_is_tolerated(given_status: str) -> None:
    [report] = handler.parse_dlr(ACCOUNT, get_callback(dlr(given_status)))
    assert (report.status, report.error_text) == (Status.DELIVERED, "DELIVRD")


def test_field_names_drifting_in_case_are_read() -> None:
    fields = {"SMESSAGEID": MESSAGE_ID, "sstatus": "UNDELIV", "IERRCODE": "001", "smobileno": "91"}
    [report] = handler.parse_dlr(ACCOUNT, get_callback(fields))
    assert (report.request_id, report.status, report.error_code, report.recipient) == (
        MESSAGE_ID,
        Status.UNDELIVERED,
        "001",
        "91",
    )


def test_the_errcode_variant_is_kept_and_a_null_code_is_dropped() -> None:
    fields = dlr("UNDELIV", iErrCode=None, ErrCode="253")
    assert handler.parse_dlr(ACCOUNT, form_callback(fields))[0].error_code == "253"
    [report] = handler.parse_dlr(ACCOUNT, form_callback(dlr("DELIVRD", iErrCode="NULL")))
    assert report.error_code == ""


def test_an_error_description_is_kept_with_the_status() -> None:
    [report] = handler.parse_dlr(ACCOUNT, get_callback(dlr("UNDELIV", sError="Absent subscriber")))
    assert report.error_text == "UNDELIV: Absent subscriber"


def test_json_numbers_are_read_as_text() -> None:
    [report] = handler.parse_dlr(
        ACCOUNT, json_callback(dlr("DELIVRD", sMessageId=12345, iErrCode=0, sMobileNo=9198))
    )
    assert (report.request_id, report.error_code, report.recipient) == ("12345", "0", "9198")


def test_the_query_and_a_form_body_are_read_together() -> None:
    callback = replace(form_callback(dlr("EXPIRED")), query=(("channel", "sms"),))
    assert handler.parse_dlr(ACCOUNT, callback)[0].status is Status.EXPIRED


INVALID_DLRS = [
    *wire.unusable_ids(lambda **f: json_callback(dlr(**f)), "sMessageId"),
    pytest.param(get_callback(dlr(None)), id="missing-status"),
    pytest.param(get_callback(dlr("")), id="blank-status"),
    pytest.param(get_callback(dlr("SENT-OK")), id="unknown-status"),
    pytest.param(get_callback(dlr("1")), id="numeric-status"),
    pytest.param(json_callback(dlr(["DELIVRD"])), id="status-list"),
    pytest.param(json_callback(dlr(True)), id="status-boolean"),
    pytest.param(json_callback(dlr(iErrCode=[0])), id="error-code-list"),
    *wire.malformed(dlr(), b'{"sMessageId": "x", "sStatus": ', json_callback, get_callback),
]


def test_callbacks_carry_no_signature_to_check() -> None:
    handler.authenticate(ACCOUNT, get_callback(dlr()))  # nothing to verify: no raise


# -- inbound, polling and balance --------------------------------------------------


def test_route_mobile_has_no_inbound_callback() -> None:
    wire.assert_inbound_invalid(
        handler, ACCOUNT, get_callback({"from": "9198", "text": "hi"}), "no inbound"
    )
    assert handler.inbound_answer(ACCOUNT, "reply") is None


def test_route_mobile_has_no_status_look_up() -> None:
    assert handler.poll_request(ACCOUNT, BASE, ["id-1"]) is None
    assert handler.parse_poll_response(ACCOUNT, ["id-1"], answer("DELIVRD")) == []


def test_the_balance_is_a_credit_check_with_the_credentials() -> None:
    request = wire.balance_call(
        handler, ACCOUNT, "http://h:81/", "GET", "http://h:81/CreditCheck/checkcredits"
    )
    assert list(request.params) == [("username", USERNAME), ("password", PASSWORD)]


@pytest.mark.parametrize(
    ("body", "amount"),
    [("BALANCE:1250.75", 1250.75), ("Credit Balance : 12", 12.0), ("  88.5\n", 88.5)],
)
def test_a_credit_check_answer_gives_the_balance(body: str, amount: float) -> None:
    assert handler.parse_balance(ACCOUNT, answer(body)).amount == amount


BALANCE_ERRORS = [
    (answer("PERMISSION DENIED", 200), "wrong username or password"),
    (answer("<html>oops</html>", 200), "unreadable"),
    (answer("", 200), "unreadable"),
    (answer("BALANCE:1", 503), "HTTP 503"),
]


# -- the fake over real HTTP -------------------------------------------------------


class Rig(rigging.Wiring[FakeRouteMobile]):
    async def send(
        self, *numbers: str, text: str = "Hello", encoding: str = "GSM-7", acct: Account = ACCOUNT
    ) -> list[Any]:
        sent = batch(*numbers, text=text, encoding=encoding, base_url=self.base_url)
        response = await self.execute(handler.send_request(acct, sent))
        return handler.parse_send_response(acct, sent, response)

    def reports(self) -> list[tuple[str, Status, str]]:
        found = [r for call in self.receiver.calls for r in handler.parse_dlr(ACCOUNT, call)]
        return [(r.request_id, r.status, r.recipient) for r in found]


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    fake = FakeRouteMobile(USERNAME, PASSWORD)
    async with rigging.wired(Rig, fake, callbacks=("dlr",), query="?key=secret") as rig:
        yield rig


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_the_fake_accepts_the_handlers_send_with_a_uuid_per_number(
    rig: Rig, method: str
) -> None:
    results = await rig.send("+919800000001", "+919800000002", acct=account(method=method))
    assert [r.outcome for r in results] == [Outcome.ACCEPTED] * 2
    ids = [r.request_ids[0] for r in results]
    assert [rig.fake.messages[i]["number"] for i in ids] == ["919800000001", "919800000002"]
    assert all(len(i) == 36 and i.count("-") == 4 for i in ids)
    [request] = rig.fake.sent
    assert request["method"] == method
    assert (request["username"], request["password"]) == (USERNAME, PASSWORD)
    assert request["destination"] == "919800000001,919800000002"


async def test_unicode_text_reaches_the_fake_intact(rig: Rig) -> None:
    [result] = await rig.send("+919800000001", text="नमस्ते 😀", encoding="UCS-2")
    known = rig.fake.messages[result.request_ids[0]]
    assert (known["type"], known["text"]) == ("2", "नमस्ते 😀")


async def test_a_malformed_number_is_refused_while_the_others_go(rig: Rig) -> None:
    results = await rig.send("+919800000001", "+12345")
    assert results[0].outcome is Outcome.ACCEPTED
    assert (results[1].outcome, results[1].error_code) == (Outcome.REFUSED, "1706")


async def test_a_wrong_password_is_an_account_error_and_nothing_is_sent(rig: Rig) -> None:
    rig.fake.password = "rotated"
    [result] = await rig.send("+919800000001")
    assert (result.outcome, result.error_code) == (Outcome.ACCOUNT_ERROR, "1703")
    assert rig.fake.sent == [] and rig.fake.requests_seen == 1


async def test_a_blank_sender_is_a_missing_parameter_of_the_account(rig: Rig) -> None:
    sent = replace(batch("+919800000001", base_url=rig.base_url))
    sent = replace(sent, messages=(replace(sent.messages[0], sender=""),))
    response = await rig.execute(handler.send_request(ACCOUNT, sent))
    [result] = handler.parse_send_response(ACCOUNT, sent, response)
    assert (result.outcome, result.error_code) == (Outcome.ACCOUNT_ERROR, "1702")


async def test_a_blocked_sender_is_a_sender_rejection(rig: Rig) -> None:
    rig.fake.blocked_senders = {"ACME"}
    [result] = await rig.send("+919800000001")
    assert (result.outcome, result.error_code) == (Outcome.SENDER_REJECTED, "1707")


async def test_per_number_codes_reach_only_their_numbers(rig: Rig) -> None:
    rig.fake.codes_for = {"919800000002": "1032"}
    results = await rig.send("+919800000001", "+919800000002")
    assert [(r.outcome, r.error_code) for r in results] == [
        (Outcome.ACCEPTED, ""),
        (Outcome.REFUSED, "1032"),
    ]


async def test_credit_running_out_mid_batch_fails_the_rest_as_account_errors(rig: Rig) -> None:
    rig.fake.credit = 1
    results = await rig.send("+919800000001", "+919800000002", "+919800000003")
    assert [(r.outcome, r.error_code) for r in results] == [
        (Outcome.ACCEPTED, ""),
        (Outcome.ACCOUNT_ERROR, "1025"),
        (Outcome.ACCOUNT_ERROR, "1025"),
    ]
    assert len(rig.fake.messages) == 1


async def test_planned_failures_are_transient_then_the_send_goes_through(rig: Rig) -> None:
    rig.fake.fail_next = [503, 429]
    rig.fake.answer_next = ["1710"]
    outcomes = []
    for _ in range(4):
        [result] = await rig.send("+919800000001")
        outcomes.append((result.outcome, result.error_code, result.retry_after))
    assert outcomes == [
        (Outcome.TRANSIENT, "503", None),
        (Outcome.TRANSIENT, "429", 1.0),
        (Outcome.TRANSIENT, "1710", None),
        (Outcome.ACCEPTED, "", None),
    ]
    assert rig.fake.requests_seen == 4 and len(rig.fake.sent) == 1


async def test_colon_ids_and_national_numbers_in_the_answer_still_match(rig: Rig) -> None:
    rig.fake.id_style = "colon"
    rig.fake.echo_number = lambda number: number[2:]
    results = await rig.send("+919800000002", "+919800000001")
    assert [rig.fake.messages[r.request_ids[0]]["number"] for r in results] == [
        "919800000002",
        "919800000001",
    ]


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_pushed_reports_reach_the_callback_and_parse(rig: Rig, method: str) -> None:
    rig.fake.dlr_method = method
    rig.fake.dlr_plan = [("ACKED", "000"), ("DELIVRD", "000")]
    [result] = await rig.send("+919800000001")
    await rig.fake.drain()
    message_id = result.request_ids[0]
    assert rig.reports() == [
        (message_id, Status.ENROUTE, "919800000001"),
        (message_id, Status.DELIVERED, "919800000001"),
    ]
    assert {c.method for c in rig.receiver.calls} == {method}
    assert all(("key", "secret") in c.query for c in rig.receiver.calls)
    assert rig.fake.dlr_acks == [200, 200]


async def test_no_reports_are_pushed_when_the_account_asks_for_none(rig: Rig) -> None:
    [result] = await rig.send("+919800000001", acct=account(dlr=0))
    await rig.fake.drain()
    assert result.outcome is Outcome.ACCEPTED
    assert rig.receiver.calls == [] and rig.fake.sent[0]["dlr"] == "0"


async def test_reports_can_race_ahead_of_the_send_answer(rig: Rig) -> None:
    rig.fake.dlr_before_response = True
    results = await rig.send("+919800000001", "+919800000002")
    arrived_first = [report[0] for report in rig.reports()]
    assert arrived_first == [r.request_ids[0] for r in results]


async def test_duplicates_shuffling_and_per_number_plans_shape_the_pushes(rig: Rig) -> None:
    rig.fake.duplicates, rig.fake.shuffle = 1, True
    rig.fake.dlr_plan_for = lambda number: (
        [("ACKED", "000"), ("UNDELIV", "001")] if number.endswith("2") else [("DELIVRD", "000")]
    )
    first, second = await rig.send("+919800000001", "+919800000002")
    await rig.fake.drain()
    pushed = rig.reports()
    a, b = first.request_ids[0], second.request_ids[0]
    in_plan_order = [(a, Status.DELIVERED)] * 2 + [(b, Status.ENROUTE)] * 2
    in_plan_order += [(b, Status.UNDELIVERED)] * 2
    assert sorted((i, s) for i, s, _ in pushed) == sorted(in_plan_order)
    assert [(i, s) for i, s, _ in pushed] != in_plan_order


async def test_a_failing_callback_is_recorded_in_the_acks(rig: Rig) -> None:
    rig.receiver.status = 503
    assert await rig.fake.push_dlr("unknown-id", "DELIVRD") == 503
    assert rig.fake.dlr_acks == [503]


async def test_a_hung_send_is_accepted_although_the_client_times_out(rig: Rig) -> None:
    rig.fake.hang_next = 1
    request = handler.send_request(ACCOUNT, batch("+919800000001", base_url=rig.base_url))
    with pytest.raises(httpx.ReadTimeout):
        await rig.client.get(request.url, params=list(request.params), timeout=0.2)
    assert len(rig.fake.sent) == 1 and len(rig.fake.messages) == 1
    rig.fake.release_hung()


async def test_the_credit_check_answers_the_balance_or_denies_wrong_credentials(rig: Rig) -> None:
    assert (await rig.read_balance(handler, ACCOUNT)).amount == 1250.75
    rig.fake.password = "rotated"
    with pytest.raises(ValueError, match="denied"):
        await rig.read_balance(handler, ACCOUNT)


# -- the whole loop through smsgw --------------------------------------------------


@asynccontextmanager
async def routemobile_setup(
    tmp_path: Path, *, options: dict[str, Any] | None = None
) -> AsyncIterator[tuple[Gateway, FakeRouteMobile]]:
    fake = FakeRouteMobile(USERNAME, PASSWORD)
    account = rigging.account_fields(
        "rm",
        "routemobile",
        {"username": USERNAME, "password": PASSWORD},
        "ACME",
        options=options or {},
    )
    async with rigging.provider_gateway(tmp_path, fake, account, callbacks=("dlr",)) as (
        gateway,
        created,
    ):
        assert created["credentials"]["password"] != PASSWORD
        yield gateway, fake


async def test_a_batch_is_one_request_and_ends_delivered_by_pushed_reports(tmp_path: Path) -> None:
    async with routemobile_setup(tmp_path) as (gateway, fake):
        fake.dlr_plan = [("ACKED", "000"), ("DELIVRD", "000")]
        numbers = ["+919800000001", "+919800000002", "+919800000003"]
        sent = await gateway.send(to=numbers, text="bulk", account="rm")
        statuses = await rigging.settle(gateway, fake, [m["id"] for m in sent])
        assert set(statuses.values()) == {"delivered"}
        [request] = fake.sent
        assert sorted(request["destination"].split(",")) == [n[1:] for n in numbers]
        assert await rigging.account_counters(gateway, "rm") == rigging.tally(
            requests=3, accepted=3, delivered=3
        )


async def test_undelivered_expired_and_rejected_reports_finish_their_messages(
    tmp_path: Path,
) -> None:
    plans = {
        "1": [("DELIVRD", "000")],
        "2": [("ACKED", "000"), ("UNDELIV", "001")],
        "3": [("EXPIRED", "003")],
        "4": [("DND", "032")],
    }
    async with routemobile_setup(tmp_path) as (gateway, fake):
        fake.dlr_plan_for = lambda number: plans[number[-1]]
        fake.duplicates, fake.shuffle = 1, True
        sent = await gateway.send(to=[f"+91980000000{d}" for d in "1234"], text="x", account="rm")
        statuses = await rigging.settle(gateway, fake, [m["id"] for m in sent])
        expected = {"1": "delivered", "2": "undelivered", "3": "expired", "4": "rejected"}
        assert {m["to"][-1]: statuses[m["id"]] for m in sent} == expected
        undelivered = await gateway.message(next(m["id"] for m in sent if m["to"][-1] == "2"))
        assert undelivered["error"] == {"code": "001", "message": "UNDELIV"}
        counters = await rigging.account_counters(gateway, "rm")
        assert (counters["delivered"], counters["undelivered"], counters["pending"]) == (1, 3, 0)


async def test_a_refused_number_fails_with_route_mobiles_code(tmp_path: Path) -> None:
    async with routemobile_setup(tmp_path) as (gateway, fake):
        fake.codes_for = {"919800000002": "1706"}
        sent = await gateway.send(to=["+919800000001", "+919800000002"], text="x", account="rm")
        statuses = await rigging.settle(gateway, fake, [m["id"] for m in sent])
        by_number = {m["to"]: statuses[m["id"]] for m in sent}
        assert by_number == {"+919800000001": "delivered", "+919800000002": "failed"}
        await rigging.one_refused_one_delivered(gateway, "rm", sent[1]["id"], "1706")


async def test_wrong_credentials_fail_the_message_as_an_account_error(tmp_path: Path) -> None:
    async with routemobile_setup(tmp_path) as (gateway, fake):
        fake.password = "rotated"
        _, detail = await rigging.send_one(gateway, fake, "rm", "+919800000001", "denied")
        assert detail["status"] == "failed" and detail["error"]["code"] == "1703"
        assert (detail["http_status"], detail["http_response"]) == (200, "1703")
        assert (await rigging.account_counters(gateway, "rm"))["failed"] == 1


async def test_the_automation_box_sends_through_route_mobile(tmp_path: Path) -> None:
    async with routemobile_setup(tmp_path) as (gateway, fake):
        [message] = await gateway.send(automation="919800000001|Привет from automation")
        assert (message["account"], message["encoding"]) == ("rm", "UCS-2")
        assert (await rigging.settle(gateway, fake, [message["id"]]))[message["id"]] == "delivered"
        [known] = fake.messages.values()
        assert (known["type"], known["text"]) == ("2", "Привет from automation")


async def test_the_stored_provider_response_never_holds_the_password(tmp_path: Path) -> None:
    async with routemobile_setup(tmp_path, options={"method": "GET"}) as (
        gateway,
        fake,
    ):
        _, detail = await rigging.send_one(gateway, fake, "rm", "+919800000001", "secret?")
        assert detail["http_response"].startswith("1701|919800000001|")
        assert PASSWORD not in str(detail) and urlencode({"p": PASSWORD})[2:] not in str(detail)
        account_view = (await gateway.api.get("/v1/accounts/rm")).json()
        assert PASSWORD not in json.dumps(account_view)
        dump = await db_dump(gateway.settings)
        assert PASSWORD not in dump  # sealed at rest, even in the accounts table


async def test_the_balance_endpoint_reads_route_mobiles_credit_check(tmp_path: Path) -> None:
    async with routemobile_setup(tmp_path) as (gateway, fake):
        fake.balance = 42.5
        response = await gateway.api.get("/v1/balance/rm")
        assert response.status_code == 200
        assert response.json()["balance"] == 42.5
        fake.password = "rotated"
        failed = await gateway.api.get("/v1/balance/rm")
        assert failed.status_code == 502 and PASSWORD not in failed.text


AMBIGUOUS = rigging.Ambiguous(
    fake=lambda: FakeRouteMobile(USERNAME, PASSWORD),
    account=rigging.account_fields(
        "rm", "routemobile", {"username": USERNAME, "password": PASSWORD}, "ACME"
    ),
    late_report=lambda fake, _to: fake.push_dlr(next(iter(fake.messages)), "DELIVRD"),
    callbacks=("dlr",),
)
"""Route Mobile echoes nothing of ours: a lost answer is found by its recipient."""
