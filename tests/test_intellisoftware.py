"""IntelliSoftware: the handler against the HTTP interface's wire format, the fake over
HTTP, and the whole loop through a running smsgw.

The first part feeds the handler the documented plain-text shapes with no server at
all. The second serves `FakeIntelliSoftware` on loopback and drives it with the
handler's own requests. The third runs smsgw next to the fake, which forwards its
status reports to the account's callback URL as IntelliSoftware does.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from hypothesis import strategies as st

from handlers.base import CallbackRequest, SendRefused, WireResponse
from handlers.intellisoftware import IntelliSoftwareHandler
from service.model import Account, InboundSms, Outcome, SendBatch, Status
from service.segments import segment
from tests import rig as rigging
from tests import wire
from tests.conftest import Gateway
from tests.databases import db_dump
from tests.fake_intellisoftware import FakeIntelliSoftware

USERNAME = "acme-user"
PASSWORD = "s3cret-pa55word"
BASE = "http://intelli.test"
ID = "10011000000000000001"
handler = IntelliSoftwareHandler()
LOGIN = {"username": USERNAME, "password": PASSWORD}
ACCOUNT = Account(name="intelli", provider="intellisoftware", credentials=LOGIN, sender="ACME")
GET_ACCOUNT = replace(ACCOUNT, options={"method": "GET"})


def batch(
    *numbers: str, text: str = "Hello", sender: str = "ACME", base_url: str = BASE
) -> SendBatch:
    shape = segment(text)
    messages = wire.outgoing(numbers, text, sender, shape.encoding, shape.segments)
    return SendBatch(messages, base_url, dlr_url="http://gw/callbacks/intelli/dlr?key=k")


DLR_URL = "http://gw/callbacks/intelli/dlr"


form_callback = partial(wire.form_callback, DLR_URL)


get_callback = partial(wire.get_callback, DLR_URL)


json_callback = partial(wire.json_callback, "http://gw/callbacks/intelli/inbound")


CALLBACK_FORMS = {"form": form_callback, "get": get_callback, "json": json_callback}


# -- send requests -----------------------------------------------------------------


def test_one_message_is_posted_as_a_form_with_the_number_in_digits_without_plus() -> None:
    request = handler.send_request(ACCOUNT, batch("+447700900123"))
    assert (request.method, request.url) == ("POST", f"{BASE}/smsgateway/sendmsg.aspx")
    assert request.form is not None
    assert list(request.form) == [
        ("username", USERNAME),
        ("password", PASSWORD),
        ("to", "447700900123"),
        ("from", "ACME"),
        ("text", "Hello"),
        ("maxconcat", "1"),
    ]
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert request.json is None and list(request.params) == []


def test_the_get_method_carries_the_same_fields_in_the_query() -> None:
    request = handler.send_request(GET_ACCOUNT, batch("+447700900123"))
    assert request.method == "GET" and request.form is None
    assert dict(request.params) == {
        "username": USERNAME,
        "password": PASSWORD,
        "to": "447700900123",
        "from": "ACME",
        "text": "Hello",
        "maxconcat": "1",
    }


def test_a_batch_joins_its_numbers_with_commas_and_sends_a_repeated_number_once() -> None:
    request = handler.send_request(
        ACCOUNT, batch("+447700900001", "+447700900002", "+447700900001", "+35850000003")
    )
    assert request.form is not None
    assert dict(request.form)["to"] == "447700900001,447700900002,35850000003"


def test_an_empty_sender_is_left_out_for_the_account_default() -> None:
    request = handler.send_request(ACCOUNT, batch("+447700900123", sender=""))
    assert request.form is not None
    assert "from" not in dict(request.form)


@pytest.mark.parametrize(
    ("text", "maxconcat"),
    [("x" * 160, "1"), ("x" * 161, "2"), ("x" * 459, "3"), ("é" * 70, "1")],
    ids=["160-gsm", "161-gsm", "459-gsm", "70-gsm-latin"],
)
def test_maxconcat_asks_for_exactly_the_parts_the_text_needs(text: str, maxconcat: str) -> None:
    request = handler.send_request(ACCOUNT, batch("+447700900123", text=text))
    assert request.form is not None
    assert dict(request.form)["maxconcat"] == maxconcat


def test_the_account_option_raises_the_parts_a_message_may_take() -> None:
    account = replace(ACCOUNT, options={"maxconcat": 6})
    request = handler.send_request(account, batch("+447700900123", text="x" * 800))
    assert request.form is not None
    fields = dict(request.form)
    assert (fields["maxconcat"], fields["to"]) == ("6", "447700900123")


def test_a_text_over_the_accounts_maxconcat_is_refused_before_anything_is_sent() -> None:
    with pytest.raises(SendRefused) as refused:
        handler.send_request(ACCOUNT, batch("+447700900123", "+447700900124", text="x" * 460))
    assert refused.value.code == "MAXCONCAT_EXCEEDED"
    assert "needs 4 parts" in refused.value.text and "maxconcat 3" in refused.value.text


@pytest.mark.parametrize("bad", [0, -2, "lots", True, None, 2.5])
def test_a_nonsense_maxconcat_option_falls_back_to_three(bad: Any) -> None:
    account = replace(ACCOUNT, options={"maxconcat": bad})
    request = handler.send_request(account, batch("+447700900123", text="x" * 459))
    assert request.form is not None
    assert "to" in dict(request.form)


def test_a_unicode_text_goes_as_type_2_hex_by_default() -> None:
    request = handler.send_request(ACCOUNT, batch("+447700900123", text="Привет 😃"))
    assert request.form is not None
    fields = dict(request.form)
    assert fields["type"] == "2"
    assert fields["hex"] == "041F044004380432043504420020D83DDE03"
    assert "text" not in fields and fields["maxconcat"] == "1"


def test_the_unicode_text_option_sends_unicode_in_the_text_field() -> None:
    account = replace(ACCOUNT, options={"unicode": "text"})
    request = handler.send_request(account, batch("+447700900123", text="Привет"))
    assert request.form is not None
    fields = dict(request.form)
    assert fields["text"] == "Привет" and "type" not in fields and "hex" not in fields


def test_voice_sms_is_type_6_with_text_and_no_part_limit() -> None:
    account = replace(ACCOUNT, options={"type": 6})
    request = handler.send_request(account, batch("+447700900123", text="y" * 900))
    assert request.form is not None
    fields = dict(request.form)
    assert (fields["type"], fields["text"], fields["to"]) == ("6", "y" * 900, "447700900123")
    assert "maxconcat" not in fields


SEND_URLS = [
    (batch("+447700900123", base_url="http://h:81/"), "http://h:81/smsgateway/sendmsg.aspx"),
    (
        batch("+447700900123", base_url=""),
        "https://www.intellisoftware.co.uk/smsgateway/sendmsg.aspx",
    ),
]


# -- send answers ------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [f"ID:{ID}", f"ID:{ID}\r\n", f"ID: {ID}", f"\ufeffID:{ID}", f"id:{ID}\n\n"],
    ids=["plain", "crlf", "space-after-colon", "bom", "lower-case"],
)
def test_a_single_id_line_accepts_the_message_as_submitted(body: str) -> None:
    [result] = handler.parse_send_response(ACCOUNT, batch("+447700900123"), wire.answer(200, body))
    assert (result.outcome, result.request_ids, result.status) == (
        Outcome.ACCEPTED,
        (ID,),
        Status.SUBMITTED,
    )


def test_a_multiline_answer_maps_each_line_back_by_number_whatever_its_order() -> None:
    body = f"447700900003,ID:{ID}\r\n447700900001,ID:{ID}\r\n447700900002,ERR:INVALID_NUMBER\r\n"
    sent = batch("+447700900001", "+447700900002", "+447700900003")
    results = handler.parse_send_response(ACCOUNT, sent, wire.answer(200, body))
    assert [r.outcome for r in results] == [Outcome.ACCEPTED, Outcome.REFUSED, Outcome.ACCEPTED]
    assert results[0].request_ids == results[2].request_ids == (ID,)
    assert (results[1].error_code, results[1].request_ids) == ("INVALID_NUMBER", ())


def test_a_number_sent_twice_gets_the_one_line_for_both_messages() -> None:
    body = f"447700900001,ID:{ID}\n447700900002,ID:{ID}"
    sent = batch("+447700900001", "+447700900002", "+447700900001")
    results = handler.parse_send_response(ACCOUNT, sent, wire.answer(200, body))
    assert [r.request_ids for r in results] == [(ID,)] * 3


@pytest.mark.parametrize(
    "written",
    ["00447700900001", "+447700900001", "07700900001", "7700900001", "44 7700 900001"],
)
def test_lines_match_numbers_however_intellisoftware_writes_them(written: str) -> None:
    body = f"{written},ID:{ID}\n447700900002,ERR:INVALID_NUMBER"
    results = handler.parse_send_response(
        ACCOUNT, batch("+447700900001", "+447700900002"), wire.answer(200, body)
    )
    assert [r.outcome for r in results] == [Outcome.ACCEPTED, Outcome.REFUSED]


def test_an_ambiguous_rewritten_number_is_not_guessed() -> None:
    body = f"7700900001,ID:{ID}\n447700900002,ID:{ID}"
    results = handler.parse_send_response(
        ACCOUNT, batch("+447700900001", "+337700900001", "+447700900002"), wire.answer(200, body)
    )
    assert [r.outcome for r in results] == [Outcome.REFUSED, Outcome.REFUSED, Outcome.ACCEPTED]
    assert results[0].error_code == "missing_from_answer"


def test_messages_missing_from_a_multiline_answer_are_refused_saying_so() -> None:
    body = f"447700900002,ID:{ID}\r\n"
    results = handler.parse_send_response(
        ACCOUNT, batch("+447700900001", "+447700900002"), wire.answer(200, body)
    )
    assert [r.outcome for r in results] == [Outcome.REFUSED, Outcome.ACCEPTED]
    assert results[0].error_code == "missing_from_answer"
    assert "no line for this number" in results[0].error_text


def test_a_single_id_line_for_many_numbers_covers_the_whole_submission() -> None:
    results = handler.parse_send_response(
        ACCOUNT, batch("+447700900001", "+447700900002"), wire.answer(200, f"ID:{ID}")
    )
    assert [r.request_ids for r in results] == [(ID,), (ID,)]


def test_a_whole_submission_error_line_among_numbered_lines_answers_the_rest() -> None:
    body = f"447700900001,ID:{ID}\nERR:GATEWAY_ERROR"
    results = handler.parse_send_response(
        ACCOUNT, batch("+447700900001", "+447700900002"), wire.answer(200, body)
    )
    assert [r.outcome for r in results] == [Outcome.ACCEPTED, Outcome.TRANSIENT]


# Every documented ERR: code (and the NO_ family by example), with its outcome.
ERROR_TABLE = [
    ("LOGIN_INVALID", Outcome.ACCOUNT_ERROR, "username or password"),
    ("INSUFFICIENT_CREDIT", Outcome.ACCOUNT_ERROR, "credit"),
    ("NO_USERNAME", Outcome.ACCOUNT_ERROR, "'username' is missing"),
    ("NO_PASSWORD", Outcome.ACCOUNT_ERROR, "'password' is missing"),
    ("NO_TO", Outcome.REFUSED, "'to' is missing"),
    ("NO_TEXT", Outcome.REFUSED, "'text' is missing"),
    ("NO_XXXXXXXXXXX", Outcome.REFUSED, "'xxxxxxxxxxx' is missing"),
    ("INVALID_NUMBER", Outcome.REFUSED, "destination number"),
    ("INVALID_REQUEST", Outcome.REFUSED, "invalid"),
    ("PARAMETER_MISSING", Outcome.REFUSED, "'hex' parameter is missing"),
    ("PARAMETER_INVALID", Outcome.REFUSED, "'hex' parameter is malformed"),
    ("GATEWAY_ERROR", Outcome.TRANSIENT, "cannot take the request now"),
    ("INTERNAL_ERROR", Outcome.TRANSIENT, "cannot take the request now"),
    ("AUTH_PARAMETER_MISSING", Outcome.ACCOUNT_ERROR, "authentication"),
    ("AUTH_PARAMETER_INVALID", Outcome.ACCOUNT_ERROR, "authentication"),
    ("CONNECTION_NOT_SECURE", Outcome.ACCOUNT_ERROR, "HTTPS"),
    ("DAILY_ALLOWANCE_EXCEEDED", Outcome.ACCOUNT_ERROR, "daily"),
    ("INVALID_SENDER", Outcome.SENDER_REJECTED, "sender"),
    ("SOMETHING_NEW", Outcome.REFUSED, "undocumented"),
]


@pytest.mark.parametrize(("code", "outcome", "text"), ERROR_TABLE, ids=[c for c, *_ in ERROR_TABLE])
def test_every_err_code_is_classified_for_the_whole_submission(
    code: str, outcome: Outcome, text: str
) -> None:
    sent = batch("+447700900001", "+447700900002")
    results = handler.parse_send_response(ACCOUNT, sent, wire.answer(200, f"ERR:{code}\r\n"))
    assert len(results) == 2
    for result in results:
        assert (result.outcome, result.error_code, result.request_ids) == (outcome, code, ())
        assert text in result.error_text


@pytest.mark.parametrize(("code", "outcome", "text"), ERROR_TABLE, ids=[c for c, *_ in ERROR_TABLE])
def test_every_err_code_is_classified_on_a_recipient_line(
    code: str, outcome: Outcome, text: str
) -> None:
    body = f"447700900001,ERR:{code}\r\n447700900002,ID:{ID}"
    first, second = handler.parse_send_response(
        ACCOUNT, batch("+447700900001", "+447700900002"), wire.answer(200, body)
    )
    assert (first.outcome, first.error_code) == (outcome, code)
    assert second.outcome is Outcome.ACCEPTED


@pytest.mark.parametrize(
    "case",
    [
        wire.UNAUTHORIZED,
        wire.refused(
            403,
            "ERR:LOGIN_INVALID",
            Outcome.ACCOUNT_ERROR,
            "LOGIN_INVALID",
            "HTTP 403",
            id="403-with-err",
        ),
        wire.throttled(
            429,
            "Too Many Requests",
            "429",
            "Too Many Requests",
            seconds="7",
            header="retry-after",
            id="429-retry-after",
        ),
        wire.past_date(429, b"", "429", "HTTP 429", id="429-retry-after-past-date"),
        wire.refused(500, "boom", Outcome.UNKNOWN, "500", "boom", id="500"),
        wire.BAD_GATEWAY_PAGE,
        wire.throttled(503, f"ID:{ID}", "503", "HTTP 503", seconds="1", id="503-even-with-an-id"),
        wire.NOT_FOUND_PAGE,
        wire.refused(400, "ERR:INVALID_REQUEST", Outcome.REFUSED, "INVALID_REQUEST", "", id="400"),
        wire.OK_BUT_EMPTY,
        wire.OK_WITH_A_PAGE,
        wire.refused_with_status(200, '{"id": 1}', "unreadable", id="200-json"),
        wire.refused_with_status(200, "ID:", "unreadable", id="200-id-without-value"),
        wire.refused_with_status(200, "OK", "unreadable", id="200-unknown-word"),
    ],
)
def test_http_failures_and_unreadable_answers_are_classified_for_each_message(
    case: wire.Refusal,
) -> None:
    case.judge(handler, ACCOUNT, batch("+447700900001", "+447700900002"))


SEND_TOKENS = [
    f"ID:{ID}",
    "ID:",
    "ERR:INVALID_NUMBER",
    "ERR:",
    "447700900001,",
    "447700900002,",
    "+44 7700,",
    ",",
    "\r\n",
    "\n",
    " ",
    "ERR:LOGIN_INVALID",
    "<html>",
    "BALANCE:3",
]


# Any answer to a send, with the batch and account it answers; the contract test
# parses it and asks `judge_any_answer` whether each result is one this provider may give.
ANY_SEND_ANSWER = wire.any_send_answer(
    st.builds(
        lambda numbers, text: batch(*numbers, text=text),
        st.lists(
            st.sampled_from(["+447700900001", "+447700900002", "+35850000003", "+12025550100"]),
            min_size=1,
            max_size=5,
        ),
        st.sampled_from(["Hi", "x" * 200, "Привет"]),
    ),
    st.one_of(
        st.binary(max_size=200),
        st.lists(st.sampled_from(SEND_TOKENS), max_size=12).map(lambda t: "".join(t).encode()),
        st.text(max_size=80).map(str.encode),
    ),
    accounts=st.sampled_from(
        [
            replace(ACCOUNT, options=o)
            for o in ({}, {"maxconcat": 1}, {"type": 6}, {"method": "GET"})
        ]
    ),
)

judge_any_answer = partial(wire.assert_accepted_only_on_2xx, says_why=True)


# -- status reports ----------------------------------------------------------------

STATUS_TABLE = [
    (0, Status.ENROUTE, "Unknown"),
    (1, Status.SUBMITTED, "OK"),
    (2, Status.SUBMITTED, "Message Queued"),
    (3, Status.ENROUTE, "Message Sent"),
    (4, Status.DELIVERED, "Message Delivered"),
    (5, Status.FAILED, "Error With Request"),
    (6, Status.UNDELIVERED, "Unable To Deliver"),
    (7, Status.UNDELIVERED, "Routing Error"),
    (8, Status.EXPIRED, "Message Expired"),
    (11, Status.DELIVERED, "Acknowledged By Recipient (Voice-SMS)"),
    (12, Status.UNDELIVERED, "Rejected By Recipient (Voice-SMS)"),
]


def status_report(status: Any = 4, **extra: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {"msgid": ID, "status": status, "toaddr": "447700900001"}
    return wire.changed(fields, extra)


@pytest.mark.parametrize(
    ("code", "status", "text"), STATUS_TABLE, ids=[str(c) for c, *_ in STATUS_TABLE]
)
@pytest.mark.parametrize("form", CALLBACK_FORMS)
def test_every_status_code_maps_in_every_callback_form(
    form: str, code: int, status: Status, text: str
) -> None:
    [report] = handler.parse_dlr(ACCOUNT, CALLBACK_FORMS[form](status_report(code)))
    assert (report.request_id, report.recipient, report.status) == (ID, "447700900001", status)
    assert (report.error_code, report.error_text) == (str(code), text)


def test_an_undocumented_status_number_is_kept_without_finalizing_anything() -> None:
    [report] = handler.parse_dlr(ACCOUNT, form_callback(status_report(9)))
    assert (report.status, report.error_code) == (Status.ENROUTE, "9")
    assert "unknown status code 9" in report.error_text


def test_a_status_report_with_spaces_around_its_values_still_reads() -> None:
    [report] = handler.parse_dlr(
        ACCOUNT, form_callback(status_report(" 4 ", msgid=f" {ID} ", toaddr=" 447700900001 "))
    )
    assert (report.request_id, report.status, report.recipient) == (
        ID,
        Status.DELIVERED,
        "447700900001",
    )


INVALID_DLRS = [
    *wire.unusable_ids(lambda **f: json_callback(status_report(**f)), "msgid"),
    *wire.unusable_codes(lambda **f: json_callback(status_report(**f)), "status"),
    pytest.param(form_callback(status_report(None)), id="no-status"),
    pytest.param(form_callback(status_report("")), id="blank-status"),
    pytest.param(form_callback(status_report("DELIVERED")), id="status-word"),
    pytest.param(form_callback(status_report("4.5")), id="status-fraction"),
    pytest.param(json_callback(status_report(-1)), id="status-negative"),
    pytest.param(form_callback(status_report(toaddr=None)), id="no-toaddr"),
    pytest.param(form_callback(status_report(toaddr="unknown")), id="toaddr-without-digits"),
    *wire.malformed(status_report(), b'{"msgid": "1", "status": ', json_callback, get_callback),
    pytest.param(
        CallbackRequest("POST", "http://gw/x", (), {"content-type": "text/plain"}, b"\xff\xfe"),
        id="not-utf8",
    ),
]


# -- inbound SMS -------------------------------------------------------------------

INBOUND_FORM = {
    "from": "447710123456",
    "text": "Hello back",
    "msgid": "20022000000000000009",
    "sent": "2010-06-10T14:45:12+01:00",
    "networkcode": "23415",
}

INBOUND_JSON = {
    "messages": [
        {
            "from": "44771012345",
            "to": "44771012346",
            "messageid": "21ba6a2ee454d1710d88f357df34fdb3f5",
            "channel": "sms",
            "sent": "2025-06-03T13:50:05-00:00",
            "content": {"msgtype": "text", "text": "Message Text"},
        },
        {
            "from": "44771012347",
            "to": "44771012346",
            "messageid": "31ba6a2ee454d1710d88f357df34fdb3f6",
            "channel": "sms",
            "sent": "2025-06-03T13:51:05-00:00",
            "content": {"msgtype": "unicode", "text": "Smiley \U0001f603"},
        },
    ]
}


@pytest.mark.parametrize("form", ["form", "get"])
def test_a_forwarded_sms_in_the_classic_fields_is_read(form: str) -> None:
    [sms] = handler.parse_inbound(ACCOUNT, CALLBACK_FORMS[form](INBOUND_FORM))
    assert sms == InboundSms("447710123456", "", "Hello back", "20022000000000000009")


def test_forwarded_sms_in_the_json_format_are_read_one_by_one() -> None:
    first, second = handler.parse_inbound(ACCOUNT, json_callback(INBOUND_JSON))
    assert first == InboundSms(
        "44771012345", "44771012346", "Message Text", "21ba6a2ee454d1710d88f357df34fdb3f5"
    )
    assert second.text == "Smiley \U0001f603"


def test_binary_content_in_the_json_format_is_acknowledged_but_not_stored() -> None:
    binary = {
        **INBOUND_JSON["messages"][0],
        "content": {"msgtype": "binary", "udh": "0605040B8423F0", "ud": "32F40100480E01"},
    }
    assert handler.parse_inbound(ACCOUNT, json_callback({"messages": [binary]})) == []


def test_inbound_text_is_kept_exactly_even_when_empty_or_spaced() -> None:
    wire.assert_text_kept_exactly(
        handler, ACCOUNT, lambda text: form_callback({**INBOUND_FORM, "text": text})
    )


@pytest.mark.parametrize(
    "callback",
    [
        pytest.param(form_callback({"text": "hi"}), id="no-from"),
        pytest.param(form_callback({"from": "447710123456"}), id="no-text"),
        pytest.param(json_callback({"from": "4477", "text": ["a"]}), id="text-list"),
        pytest.param(json_callback({"messages": []}), id="empty-messages"),
        pytest.param(json_callback({"messages": "x"}), id="messages-text"),
        pytest.param(json_callback({"messages": ["x"]}), id="message-not-object"),
        pytest.param(json_callback({"messages": [{"from": "4477"}]}), id="no-content"),
        pytest.param(json_callback({"messages": [{"content": {"text": "hi"}}]}), id="json-no-from"),
        pytest.param(
            json_callback({"messages": [{"from": "4477", "content": {"msgtype": "text"}}]}),
            id="json-text-missing",
        ),
        pytest.param(
            json_callback({"messages": [{"from": "4477", "content": {"text": 5}}]}),
            id="json-text-number",
        ),
    ],
)
def test_an_inbound_callback_intellisoftware_would_never_send_is_invalid(
    callback: CallbackRequest,
) -> None:
    wire.assert_inbound_invalid(handler, ACCOUNT, callback)


def test_callbacks_need_no_signature_and_inbound_needs_no_special_answer() -> None:
    handler.authenticate(ACCOUNT, form_callback(status_report()))  # raises nothing
    assert handler.inbound_answer(ACCOUNT, "auto reply") is None


# -- polling and balance -----------------------------------------------------------


def test_intellisoftware_has_no_status_query_to_poll() -> None:
    assert handler.poll_request(ACCOUNT, BASE, [ID]) is None
    assert handler.parse_poll_response(ACCOUNT, [ID], wire.answer(200, "whatever")) == []


def test_the_balance_call_posts_the_credentials_to_getbalance() -> None:
    request = wire.balance_call(
        handler, ACCOUNT, "http://h:81/", "POST", "http://h:81/smsgateway/getbalance.aspx"
    )
    assert request.form is not None
    assert list(request.form) == [("username", USERNAME), ("password", PASSWORD)]
    get = handler.balance_request(GET_ACCOUNT, "")
    assert get is not None
    assert (get.method, get.url) == (
        "GET",
        "https://www.intellisoftware.co.uk/smsgateway/getbalance.aspx",
    )
    assert dict(get.params) == {"username": USERNAME, "password": PASSWORD}


@pytest.mark.parametrize(
    ("body", "amount"),
    [("BALANCE:100", 100.0), ("BALANCE: 12.5\r\n", 12.5), ("balance:0", 0.0)],
)
def test_a_balance_answer_gives_the_remaining_credits(body: str, amount: float) -> None:
    balance = handler.parse_balance(ACCOUNT, wire.answer(200, body))
    assert (balance.amount, balance.currency) == (amount, "credits")


BALANCE_ERRORS = [
    (wire.answer(200, "ERR:LOGIN_INVALID"), "ERR:LOGIN_INVALID"),
    (wire.answer(200, "ERR:NO_PASSWORD"), "'password' is missing"),
    (wire.answer(200, "ERR:INTERNAL_ERROR"), "ERR:INTERNAL_ERROR"),
    (wire.answer(200, "BALANCE:lots"), "not a number"),
    (wire.answer(200, "BALANCE:" + "9" * 400), "not a number"),
    (wire.answer(200, ""), "empty answer"),
    (wire.answer(200, wire.HTML_PAGE), "unreadable"),
]


# -- the fake over real HTTP -------------------------------------------------------


class Rig(rigging.Wiring[FakeIntelliSoftware]):
    def batch(self, *numbers: str, text: str = "Hello") -> SendBatch:
        return batch(*numbers, text=text, base_url=self.base_url)

    async def send(self, sent: SendBatch, account: Account = ACCOUNT) -> WireResponse:
        return await self.execute(handler.send_request(account, sent))

    async def results(self, sent: SendBatch, account: Account = ACCOUNT) -> list[Any]:
        return handler.parse_send_response(account, sent, await self.send(sent, account))


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    async with rigging.wired(Rig, FakeIntelliSoftware(USERNAME, PASSWORD)) as rig:
        yield rig


@pytest.mark.parametrize("account", [ACCOUNT, GET_ACCOUNT], ids=["post", "get"])
async def test_a_single_send_is_accepted_by_the_fake_with_its_id(
    rig: Rig, account: Account
) -> None:
    response = await rig.send(rig.batch("+447700900123"), account)
    assert response.text == f"ID:{ID}"
    [result] = handler.parse_send_response(account, rig.batch("+447700900123"), response)
    assert (result.outcome, result.request_ids) == (Outcome.ACCEPTED, (ID,))
    [fields] = rig.fake.sent
    assert {k: fields[k] for k in ("username", "to", "from", "text", "maxconcat")} == {
        "username": USERNAME,
        "to": "447700900123",
        "from": "ACME",
        "text": "Hello",
        "maxconcat": "1",
    }
    assert (ID, "447700900123") in rig.fake.messages


async def test_a_batch_gets_one_shared_id_and_a_line_per_number(rig: Rig) -> None:
    rig.fake.number_errors = {"447700900002": "INVALID_NUMBER"}
    sent = rig.batch("+447700900001", "+447700900002", "+447700900003", "+447700900001")
    response = await rig.send(sent)
    assert response.text.split("\r\n") == [
        f"447700900001,ID:{ID}",
        "447700900002,ERR:INVALID_NUMBER",
        f"447700900003,ID:{ID}",
    ]
    results = handler.parse_send_response(ACCOUNT, sent, response)
    assert [r.outcome for r in results] == [
        Outcome.ACCEPTED,
        Outcome.REFUSED,
        Outcome.ACCEPTED,
        Outcome.ACCEPTED,
    ]
    assert {r.request_ids for r in results if r.request_ids} == {(ID,)}
    assert rig.fake.submissions == {ID: ["447700900001", "447700900003"]}


@pytest.mark.parametrize(
    ("code", "outcome"),
    [
        ("INSUFFICIENT_CREDIT", Outcome.ACCOUNT_ERROR),
        ("GATEWAY_ERROR", Outcome.TRANSIENT),
        ("INTERNAL_ERROR", Outcome.TRANSIENT),
        ("INVALID_REQUEST", Outcome.REFUSED),
    ],
)
async def test_whole_submission_errors_from_the_fake_are_classified(
    rig: Rig, code: str, outcome: Outcome
) -> None:
    rig.fake.error_next = [code]
    sent = rig.batch("+447700900001", "+447700900002")
    results = await rig.results(sent)
    assert {(r.outcome, r.error_code) for r in results} == {(outcome, code)}
    assert rig.fake.sent == []


@pytest.mark.parametrize(
    ("credentials", "code"),
    [
        ({"username": USERNAME, "password": "wrong"}, "LOGIN_INVALID"),
        ({"username": USERNAME}, "NO_PASSWORD"),
        ({}, "NO_USERNAME"),
    ],
)
async def test_bad_credentials_are_account_errors(
    rig: Rig, credentials: dict[str, str], code: str
) -> None:
    account = replace(ACCOUNT, credentials=credentials)
    [result] = await rig.results(rig.batch("+447700900001"), account)
    assert (result.outcome, result.error_code) == (Outcome.ACCOUNT_ERROR, code)
    assert rig.fake.sent == [] and rig.fake.requests_seen == 1


async def test_running_out_of_credit_is_an_account_error(rig: Rig) -> None:
    rig.fake.credits = 1
    [first, second] = await rig.results(rig.batch("+447700900001", "+447700900002"))
    assert first.outcome is second.outcome is Outcome.ACCOUNT_ERROR
    assert first.error_code == "INSUFFICIENT_CREDIT"


async def test_planned_http_failures_are_transient_then_the_send_goes_through(rig: Rig) -> None:
    rig.fake.fail_next = [503, 429]
    sent = rig.batch("+447700900001")
    outcomes = []
    for _ in range(3):
        [result] = await rig.results(sent)
        outcomes.append((result.outcome, result.retry_after))
    assert outcomes == rigging.BUSY_THEN_SLOWED_THEN_SENT
    assert rig.fake.requests_seen == 3 and len(rig.fake.sent) == 1


async def test_a_unicode_text_reaches_the_fake_intact_as_hex(rig: Rig) -> None:
    sent = rig.batch("+447700900001", text="Grüße Привет 😃")
    [result] = await rig.results(sent)
    assert result.outcome is Outcome.ACCEPTED
    assert rig.fake.messages[(ID, "447700900001")]["text"] == "Grüße Привет 😃"
    assert rig.fake.messages[(ID, "447700900001")]["type"] == 2


async def test_a_long_text_is_sent_whole_in_the_parts_it_needs(rig: Rig) -> None:
    [result] = await rig.results(rig.batch("+447700900001", text="z" * 300))
    assert result.outcome is Outcome.ACCEPTED
    known = rig.fake.messages[(ID, "447700900001")]
    assert (known["parts"], known["truncated"]) == (2, False)
    assert rig.fake.credits == 998


async def test_the_fake_answers_national_numbers_in_international_form(rig: Rig) -> None:
    request = handler.send_request(ACCOUNT, rig.batch("+447700900001", "+447700900002"))
    assert request.form is not None
    national = [(k, "07700900001,07700900002" if k == "to" else v) for k, v in request.form]
    response = await rig.execute(replace(request, form=national))
    assert response.text.split("\r\n") == [f"447700900001,ID:{ID}", f"447700900002,ID:{ID}"]


@pytest.mark.parametrize("fmt", ["form", "get"])
async def test_pushed_status_reports_reach_the_callback_and_parse(rig: Rig, fmt: str) -> None:
    rig.fake.dlr_format = fmt
    sent = rig.batch("+447700900001", "+447700900002")
    await rig.results(sent)
    await rig.fake.drain()
    reports = [r for call in rig.receiver.calls for r in handler.parse_dlr(ACCOUNT, call)]
    assert [(r.request_id, r.recipient, r.status) for r in reports] == [
        (ID, "447700900001", Status.ENROUTE),
        (ID, "447700900001", Status.DELIVERED),
        (ID, "447700900002", Status.ENROUTE),
        (ID, "447700900002", Status.DELIVERED),
    ]
    assert rig.fake.dlr_acks == [200] * 4
    if fmt == "form":
        assert rig.receiver.calls[0].content_type == "application/x-www-form-urlencoded"


async def test_reports_can_race_ahead_of_the_send_answer(rig: Rig) -> None:
    rig.fake.dlr_before_response = True
    rig.fake.dlr_plan_for = lambda number: [4] if number.endswith("1") else [6]
    response = await rig.send(rig.batch("+447700900001", "+447700900002"))
    arrived_first = [handler.parse_dlr(ACCOUNT, c)[0] for c in rig.receiver.calls]
    assert [(r.recipient, r.status) for r in arrived_first] == [
        ("447700900001", Status.DELIVERED),
        ("447700900002", Status.UNDELIVERED),
    ]
    assert response.text.startswith("447700900001,ID:")


async def test_a_failing_callback_is_recorded_in_the_acks(rig: Rig) -> None:
    rig.receiver.status = 503
    assert await rig.fake.push_dlr(ID, "447700900001", 4) == 503
    assert rig.fake.dlr_acks == [503]


@pytest.mark.parametrize("fmt", ["form", "json"])
async def test_a_forwarded_inbound_sms_reaches_the_callback_and_parses(rig: Rig, fmt: str) -> None:
    rig.fake.inbound_format = fmt
    status = await rig.fake.push_inbound("447710123456", "Hi there", to="447700900000")
    assert status == 200
    [call] = rig.receiver.calls
    [sms] = handler.parse_inbound(ACCOUNT, call)
    assert (sms.sender, sms.text, sms.provider_id) == (
        "447710123456",
        "Hi there",
        "20022000000000000001",
    )


@pytest.mark.parametrize("account", [ACCOUNT, GET_ACCOUNT], ids=["post", "get"])
async def test_the_fakes_balance_reads_back_as_credits(rig: Rig, account: Account) -> None:
    rig.fake.credits = 42
    balance = await rig.read_balance(handler, account)
    assert (balance.amount, balance.currency) == (42.0, "credits")
    wrong = replace(account, credentials={"username": USERNAME, "password": "x"})
    with pytest.raises(ValueError, match="LOGIN_INVALID"):
        await rig.read_balance(handler, wrong)


# -- the whole loop through smsgw --------------------------------------------------


def intelli_setup(
    tmp_path: Path, **options: Any
) -> AbstractAsyncContextManager[tuple[Gateway, FakeIntelliSoftware]]:
    account = rigging.account_fields(
        "intelli",
        "intellisoftware",
        {"username": USERNAME, "password": PASSWORD},
        "ACME",
        options=options,
    )
    return rigging.provider_loop(tmp_path, FakeIntelliSoftware(USERNAME, PASSWORD), account)


async def counters(gateway: Gateway) -> dict[str, int]:
    """With `unmatched`: these tests count the reports that match nothing too."""
    found: dict[str, int] = (await gateway.stats())["accounts"]["intelli"]
    return found


async def test_a_batch_ends_delivered_undelivered_and_refused_with_exact_counters(
    tmp_path: Path,
) -> None:
    async with intelli_setup(tmp_path) as (gateway, fake):
        fake.number_errors = {"447911123003": "INVALID_NUMBER"}
        fake.dlr_plan_for = lambda number: [3, 4] if number.endswith("1") else [3, 6]
        sent = await gateway.send(
            to=["+447911123001", "+447911123002", "+447911123003"], text="hello", account="intelli"
        )
        by_to = {m["to"]: m["id"] for m in sent}
        statuses = await rigging.settle(gateway, fake, list(by_to.values()))
        assert [statuses[by_to[n]] for n in sorted(by_to)] == [
            "delivered",
            "undelivered",
            "failed",
        ]
        assert len(fake.sent) == 1 and fake.sent[0]["to"].count(",") == 2
        refused = await gateway.message(by_to["+447911123003"])
        assert refused["error"]["code"] == "INVALID_NUMBER"
        undelivered = await gateway.message(by_to["+447911123002"])
        assert undelivered["request_id"] == ID
        assert undelivered["error"] == {"code": "6", "message": "Unable To Deliver"}
        assert await counters(gateway) == rigging.tally(
            requests=3, accepted=2, failed=1, delivered=1, undelivered=1, unmatched=0
        )
        total = (await gateway.stats())["total"]
        assert (total["delivered"], total["undelivered"], total["failed"]) == (1, 1, 1)


async def test_a_wrong_password_fails_the_message_as_an_account_error(tmp_path: Path) -> None:
    async with intelli_setup(tmp_path) as (gateway, fake):
        fake.password = "rotated"
        status, detail = await rigging.send_one(gateway, fake, "intelli", "+447911123001", "denied")
        assert status == "failed"
        assert detail["error"]["code"] == "LOGIN_INVALID"
        assert (await counters(gateway))["failed"] == 1


async def test_the_stored_provider_response_never_holds_the_password(tmp_path: Path) -> None:
    async with intelli_setup(tmp_path, method="GET") as (gateway, fake):
        _, detail = await rigging.send_one(gateway, fake, "intelli", "+447911123001", "secret?")
        assert detail["http_response"] == f"ID:{ID}"
        assert PASSWORD not in json.dumps(detail)
        account = (await gateway.api.get("/v1/accounts/intelli")).json()
        assert PASSWORD not in json.dumps(account)
        dump = await db_dump(gateway.settings)
        assert PASSWORD not in dump  # sealed at rest, even in the accounts table


async def test_a_too_long_text_is_refused_without_reaching_anyone(tmp_path: Path) -> None:
    async with intelli_setup(tmp_path, maxconcat=2) as (gateway, fake):
        [message] = await gateway.send(to="+447911123001", text="q" * 400, account="intelli")
        await rigging.settle(gateway, fake, [message["id"]])
        detail = await gateway.message(message["id"])
        assert detail["status"] == "failed"
        assert detail["error"]["code"] == "MAXCONCAT_EXCEEDED"
        assert fake.messages == {} and fake.requests_seen == 0


async def test_the_balance_and_forwarded_inbound_sms_show_in_the_api(tmp_path: Path) -> None:
    async with intelli_setup(tmp_path) as (gateway, fake):
        fake.credits = 250
        response = await gateway.api.get("/v1/balance/intelli")
        assert response.json() == {"account": "intelli", "balance": 250.0, "currency": "credits"}
        assert await fake.push_inbound("447710123456", "Hi there") == 200
        fake.inbound_format = "json"
        assert await fake.push_inbound("447710123457", "And JSON", to="447911123000") == 200
        inbound = (await gateway.api.get("/v1/inbound")).json()["inbound"]
        assert sorted((i["from"], i["text"]) for i in inbound) == [
            ("+447710123456", "Hi there"),
            ("+447710123457", "And JSON"),
        ]


AMBIGUOUS = rigging.Ambiguous(
    fake=lambda: FakeIntelliSoftware(USERNAME, PASSWORD),
    account=rigging.account_fields(
        "intelli", "intellisoftware", {"username": USERNAME, "password": PASSWORD}, "ACME"
    ),
    late_report=lambda fake, to: fake.push_dlr(next(iter(fake.messages))[0], to, 4),
)
"""IntelliSoftware echoes nothing of ours: a lost answer is found by its recipient."""
