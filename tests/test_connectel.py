"""Connectel: the handler against the reference's wire format, and the fake over HTTP.

The first part feeds the handler the shapes of the Connectel reference (2020-08-28)
with no server at all. The second part serves `FakeConnectel` on loopback and drives
it with the handler's own requests, so both sides are checked against each other.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace
from functools import partial
from typing import Any

import httpx
import pytest
from hypothesis import strategies as st

from handlers.base import WireRequest, WireResponse
from handlers.connectel import ConnectelHandler
from service.model import Account, InboundSms, Outcome, SendBatch, Status
from tests import rig as rigging
from tests import wire
from tests.fake_connectel import FakeConnectel

TOKEN = "tok-123"
BASE = "http://connectel.test"
handler = ConnectelHandler()
ACCOUNT = Account(name="con", provider="connectel", credentials={"token": TOKEN}, sender="IKEA")
FORM_ACCOUNT = replace(ACCOUNT, options={"format": "form"})


def batch(*numbers: str, text: str = "Hello", base_url: str = BASE) -> SendBatch:
    messages = wire.outgoing(numbers, text, "IKEA")
    return SendBatch(messages, base_url, dlr_url="")


DLR_URL = "http://gw/callbacks/con/dlr"


json_callback = partial(wire.json_callback, DLR_URL)


form_callback = partial(wire.form_callback, DLR_URL)


get_callback = partial(wire.get_callback, DLR_URL)


CALLBACK_FORMS = {"json": json_callback, "form": form_callback, "get": get_callback}


def dlr(status_int: Any = 1, status_str: Any = "DELIVRD", **extra: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "action": "dlr",
        "requestid": "RMH8ZYXWCWJYIB5A.15986181942392678",
        "tokenid": "4711",
        "statusInt": status_int,
        "statusStr": status_str,
        "sender": "IKEA",
        "recipient": "4670000001",
    }
    return wire.changed(fields, extra)


# -- send requests -----------------------------------------------------------------


def test_one_message_is_posted_as_json_with_the_number_in_digits_without_plus() -> None:
    request = handler.send_request(ACCOUNT, batch("+46700000000"))
    assert request.method == "POST"
    assert request.url == f"{BASE}/api/v2/send/"
    assert request.json == {
        "authorization": TOKEN,
        "sender": "IKEA",
        "message": "Hello",
        "recipient": "46700000000",
    }
    assert request.form is None
    assert request.headers["Accept"] == "application/json"
    assert request.headers["Content-Type"] == "application/json"


def test_the_form_format_posts_the_same_fields_url_encoded() -> None:
    request = handler.send_request(FORM_ACCOUNT, batch("+46700000000"))
    assert request.json is None
    assert request.form is not None
    assert dict(request.form) == {
        "authorization": TOKEN,
        "sender": "IKEA",
        "message": "Hello",
        "recipient": "46700000000",
    }
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert request.headers["Accept"] == "application/json"


def test_a_bulk_request_keys_each_number_by_its_batch_index_and_sets_bulk() -> None:
    request = handler.send_request(ACCOUNT, batch("+46700000000", "+46700000001", "+4670000002"))
    assert request.json == {
        "authorization": TOKEN,
        "sender": "IKEA",
        "message": "Hello",
        "recipient": [{"0": "46700000000"}, {"1": "46700000001"}, {"2": "4670000002"}],
        "bulk": True,
    }


def test_a_form_bulk_request_carries_the_recipient_list_as_json_text() -> None:
    request = handler.send_request(FORM_ACCOUNT, batch("+46700000000", "+46700000001"))
    assert request.form is not None
    fields = dict(request.form)
    assert json.loads(fields["recipient"]) == [{"0": "46700000000"}, {"1": "46700000001"}]
    assert fields["bulk"] == "true"


def test_the_send_path_follows_the_base_url_even_with_a_trailing_slash() -> None:
    request = handler.send_request(ACCOUNT, batch("+46700000000", base_url="http://h:81/"))
    assert request.url == "http://h:81/api/v2/send/"


# -- send answers ------------------------------------------------------------------

SINGLE_ANSWER = {
    "href": "https://smsapi.connectel.se/api/status/?authorization=x&message=RXV",
    "method": "GET",
    "recipient": "46700000000",
    "requestid": "RXV66UX9433XJ400.15986176764672468",
    "sender": "IKEA",
    "setusInt": 0,
    "statusInt": 0,
    "statusStr": "ENROUTE",
}


def test_a_single_answer_with_a_requestid_is_accepted_en_route() -> None:
    [result] = handler.parse_send_response(
        ACCOUNT, batch("+46700000000"), wire.answer(200, SINGLE_ANSWER)
    )
    wire.assert_accepted(result, ("RXV66UX9433XJ400.15986176764672468",), Status.ENROUTE)


@pytest.mark.parametrize("name", ["QUEUE", "QUEUED"])
def test_a_queued_single_answer_is_only_submitted(name: str) -> None:
    body = {**SINGLE_ANSWER, "statusStr": name}
    [result] = handler.parse_send_response(ACCOUNT, batch("+46700000000"), wire.answer(200, body))
    assert (result.outcome, result.status) == (Outcome.ACCEPTED, Status.SUBMITTED)


def test_a_send_answer_never_reports_a_final_status() -> None:
    body = {**SINGLE_ANSWER, "statusInt": 1, "statusStr": "DELIVRD"}
    [result] = handler.parse_send_response(ACCOUNT, batch("+46700000000"), wire.answer(200, body))
    assert (result.outcome, result.status) == (Outcome.ACCEPTED, Status.SUBMITTED)


def bulk_answer(*entries: dict[str, str]) -> dict[str, Any]:
    return {
        "bulkid": "BRCNMX2Z2.15986173923570037",
        "href": "https://smsapi.connectel.se/api/status/?authorization=x&bulkid=B",
        "method": "GET",
        "recipient": list(entries),
        "sender": "IKEA",
        "statusInt": 0,
        "statusStr": "QUEUED",
    }


def test_a_bulk_answer_maps_each_result_back_by_key_whatever_its_order() -> None:
    body = bulk_answer(
        {"key": "2", "recipient": "46700000002", "requestid": "RC.3"},
        {"key": "0", "recipient": "46700000000", "requestid": "RA.1"},
        {"key": "1", "recipient": "46700000001", "requestid": "RB.2"},
    )
    sent = batch("+46700000000", "+46700000001", "+46700000002")
    results = handler.parse_send_response(ACCOUNT, sent, wire.answer(200, body))
    assert [r.request_ids for r in results] == [("RA.1",), ("RB.2",), ("RC.3",)]
    assert {r.outcome for r in results} == {Outcome.ACCEPTED}
    assert {r.status for r in results} == {Status.SUBMITTED}


def test_keys_tell_apart_the_same_number_sent_twice_in_one_bulk() -> None:
    body = bulk_answer(
        {"key": "1", "recipient": "46700000000", "requestid": "R.second"},
        {"key": "0", "recipient": "46700000000", "requestid": "R.first"},
    )
    results = handler.parse_send_response(
        ACCOUNT, batch("+46700000000", "+46700000000"), wire.answer(200, body)
    )
    assert [r.request_ids for r in results] == [("R.first",), ("R.second",)]


def test_a_bulk_answer_without_our_keys_maps_back_by_number_with_or_without_plus() -> None:
    body = bulk_answer(
        {"key": "Number2", "recipient": "+46700000001", "requestid": "RB.2"},
        {"recipient": "46700000000", "requestid": "RA.1"},
    )
    results = handler.parse_send_response(
        ACCOUNT, batch("+46700000000", "+46700000001"), wire.answer(200, body)
    )
    assert [r.request_ids for r in results] == [("RA.1",), ("RB.2",)]


def test_messages_missing_from_a_bulk_answer_are_refused_saying_so() -> None:
    body = bulk_answer({"key": "1", "recipient": "46700000001", "requestid": "RB.2"})
    results = handler.parse_send_response(
        ACCOUNT, batch("+46700000000", "+46700000001", "+46700000002"), wire.answer(200, body)
    )
    assert [r.outcome for r in results] == [Outcome.REFUSED, Outcome.ACCEPTED, Outcome.REFUSED]
    assert "missing" in results[0].error_text
    assert results[1].request_ids == ("RB.2",)


def test_a_bulk_entry_without_a_requestid_is_refused_with_its_own_error() -> None:
    body = bulk_answer(
        {"key": "0", "recipient": "46700000000", "requestid": "RA.1"},
        {"key": "1", "recipient": "4670", "statusInt": "5", "statusStr": "invalid number"},
    )
    results = handler.parse_send_response(
        ACCOUNT, batch("+46700000000", "+4670"), wire.answer(200, body)
    )
    assert results[0].outcome is Outcome.ACCEPTED
    assert (results[1].outcome, results[1].error_code) == (Outcome.REFUSED, "5")
    assert "invalid number" in results[1].error_text


@pytest.mark.parametrize(
    "case",
    [
        wire.refused(
            401,
            {"error": "Unauthorized", "message": "invalid token"},
            Outcome.ACCOUNT_ERROR,
            "401",
            "Unauthorized: invalid token",
            id="401-bad-token",
        ),
        wire.refused(403, b"", Outcome.ACCOUNT_ERROR, "403", "empty answer", id="403-blocked"),
        wire.throttled(
            429,
            {"error": "Too Many Requests"},
            "429",
            "Too Many Requests",
            seconds="7",
            header="retry-after",
            id="429-retry-after-seconds",
        ),
        wire.RETRY_AFTER_PAST_DATE,
        wire.INTERNAL_ERROR,
        wire.BAD_GATEWAY_PAGE,
        wire.throttled(503, {"error": "Unavailable"}, "503", "Unavailable", seconds="1", id="503"),
        wire.refused(
            400,
            {"statusInt": 5, "statusStr": "UNDELIV", "message": "invalid recipient"},
            Outcome.REFUSED,
            "5",
            "UNDELIV: invalid recipient",
            id="400-json-status-fields",
        ),
        wire.refused(
            400,
            {"error": {"code": "E12", "message": "sender too long"}},
            Outcome.REFUSED,
            "E12",
            "sender too long",
            id="400-json-nested-error",
        ),
        wire.NOT_FOUND_PAGE,
        wire.refused_with_status(200, b"", "empty answer", id="200-empty-body"),
        wire.OK_WITH_A_PAGE,
        wire.refused(
            200,
            {"statusInt": 0, "statusStr": "ENROUTE"},
            Outcome.REFUSED,
            "0",
            "no request ID",
            id="200-without-requestid",
        ),
        wire.refused_with_status(
            200, {"error": "authorization failed"}, "authorization failed", id="200-json-error"
        ),
        wire.refused_with_status(200, [1, 2], "unexpected answer", id="200-json-list"),
    ],
)
def test_every_error_answer_is_classified_for_each_message_without_raising(
    case: wire.Refusal,
) -> None:
    case.judge(handler, ACCOUNT, batch("+46700000000", "+46700000001"))


# Any answer to a send, with the batch and account it answers; the contract test
# parses it and asks `judge_any_answer` whether each result is one this provider may give.
ANY_SEND_ANSWER = wire.any_send_answer(
    wire.numbered_batches(batch, "+4670000000", 3),
    wire.bytes_or_json(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        ["requestid", "recipient", "key", "statusInt", "error"],
        fields=4,
        leaves=10,
    ),
    accounts=st.just(ACCOUNT),
)


# -- delivery reports --------------------------------------------------------------

STATUS_TABLE = [
    (0, "ENROUTE", Status.ENROUTE),
    (0, "QUEUE", Status.SUBMITTED),
    (1, "DELIVRD", Status.DELIVERED),
    (2, "REJECTD", Status.REJECTED),
    (3, "N/A", Status.ENROUTE),
    (4, "N/A", Status.ENROUTE),
    (5, "UNDELIV", Status.UNDELIVERED),
    (6, "N/A", Status.ENROUTE),
    (7, "N/A", Status.ENROUTE),
    (8, "EXPIRED", Status.EXPIRED),
    (9, "UNKNOWN", Status.UNDELIVERED),
]


@pytest.mark.parametrize("form", CALLBACK_FORMS)
@pytest.mark.parametrize(("code", "name", "status"), STATUS_TABLE)
def test_every_documented_status_code_maps_in_json_form_and_get_callbacks(
    form: str, code: int, name: str, status: Status
) -> None:
    [report] = handler.parse_dlr(ACCOUNT, CALLBACK_FORMS[form](dlr(code, name)))
    assert report.request_id == "RMH8ZYXWCWJYIB5A.15986181942392678"
    assert report.recipient == "4670000001"
    assert report.status is status
    assert report.error_code == str(code)
    if name == "N/A":
        assert "reserved" in report.error_text
    else:
        assert report.error_text == name


@pytest.mark.parametrize("code", [3, 4, 6, 7, 10, 42, -1])
def test_reserved_and_unknown_codes_can_never_finalize_a_message(code: int) -> None:
    [report] = handler.parse_dlr(ACCOUNT, json_callback(dlr(code, "WHATEVER")))
    assert report.status is Status.ENROUTE
    assert report.error_code == str(code)
    assert "WHATEVER" in report.error_text


def test_unknown_is_a_final_failure_that_keeps_its_code_and_text() -> None:
    [report] = handler.parse_dlr(ACCOUNT, json_callback(dlr(9, "UNKNOWN")))
    assert (report.status, report.error_code, report.error_text) == (
        Status.UNDELIVERED,
        "9",
        "UNKNOWN",
    )


def test_the_references_own_example_with_status_str_as_a_number_is_read() -> None:
    [report] = handler.parse_dlr(ACCOUNT, json_callback(dlr(1, 1)))
    assert (report.status, report.error_code, report.error_text) == (
        Status.DELIVERED,
        "1",
        "DELIVRD",
    )


@pytest.mark.parametrize("form", CALLBACK_FORMS)
def test_status_str_alone_is_enough_as_a_name_or_a_number(form: str) -> None:
    by_name = handler.parse_dlr(ACCOUNT, CALLBACK_FORMS[form](dlr(None, "EXPIRED")))
    by_number = handler.parse_dlr(ACCOUNT, CALLBACK_FORMS[form](dlr(None, 5)))
    assert (by_name[0].status, by_name[0].error_code) == (Status.EXPIRED, "8")
    assert (by_number[0].status, by_number[0].error_code) == (Status.UNDELIVERED, "5")


def test_status_int_decides_when_the_two_status_fields_disagree() -> None:
    [report] = handler.parse_dlr(ACCOUNT, json_callback(dlr("2", "DELIVRD")))
    assert (report.status, report.error_code) == (Status.REJECTED, "2")


def test_status_int_may_arrive_as_json_text() -> None:
    [report] = handler.parse_dlr(ACCOUNT, json_callback(dlr(" 8 ", "EXPIRED")))
    assert report.status is Status.EXPIRED


def test_a_status_description_is_kept_with_the_status_name() -> None:
    fields = dlr(5, "UNDELIV", statusDesc="Absent subscriber")
    [report] = handler.parse_dlr(ACCOUNT, json_callback(fields))
    assert report.error_text == "UNDELIV: Absent subscriber"


def test_query_parameters_and_a_json_body_are_read_together() -> None:
    callback = replace(json_callback(dlr(1, "DELIVRD")), query=(("secret", "s3"),))
    [report] = handler.parse_dlr(ACCOUNT, callback)
    assert report.status is Status.DELIVERED


INVALID_DLRS = [
    *wire.unusable_ids(lambda **f: json_callback(dlr(**f)), "requestid"),
    *wire.unusable_codes(lambda **f: json_callback(dlr(**f)), "status_int"),
    pytest.param(form_callback(dlr("x1", "DELIVRD")), id="form-status-int-text"),
    pytest.param(json_callback(dlr(None, None)), id="no-status-at-all"),
    pytest.param(json_callback(dlr(None, "")), id="blank-status-str-only"),
    pytest.param(json_callback(dlr(None, "GONE")), id="unknown-status-name-only"),
    *wire.malformed(dlr(), b'{"requestid": "R1", "statusInt": ', json_callback, get_callback),
]


# -- inbound SMS -------------------------------------------------------------------

INBOUND = {
    "from": "35890010000",
    "to": "3581000000",
    "requestid": "RMH8ZYXWCWJYIB5A.15986181942392678",
    "message": "Your incoming message",
}


@pytest.mark.parametrize("form", CALLBACK_FORMS)
def test_an_inbound_sms_is_read_in_every_callback_form(form: str) -> None:
    [sms] = handler.parse_inbound(ACCOUNT, CALLBACK_FORMS[form](INBOUND))
    assert sms.sender == "35890010000"
    assert sms.recipient == "3581000000"
    assert sms.text == "Your incoming message"
    assert sms.provider_id == "RMH8ZYXWCWJYIB5A.15986181942392678"


def test_inbound_numbers_sent_as_json_numbers_become_text() -> None:
    body = {**INBOUND, "from": 35890010000, "to": 3581000000}
    [sms] = handler.parse_inbound(ACCOUNT, json_callback(body))
    assert (sms.sender, sms.recipient) == ("35890010000", "3581000000")


def test_inbound_text_is_kept_exactly_even_when_empty_or_spaced() -> None:
    wire.assert_text_kept_exactly(
        handler, ACCOUNT, lambda text: json_callback({**INBOUND, "message": text})
    )


@pytest.mark.parametrize("missing", ["from", "message"])
def test_an_inbound_sms_without_sender_or_message_is_invalid(missing: str) -> None:
    body = {k: v for k, v in INBOUND.items() if k != missing}
    wire.assert_inbound_invalid(handler, ACCOUNT, json_callback(body))


# -- polling and balance -----------------------------------------------------------


def test_a_poll_asks_the_delivery_path_for_the_first_id_only() -> None:
    request = handler.poll_request(ACCOUNT, "http://h:81", ["RA.1", "RB.2"])
    assert request is not None
    assert (request.method, request.url) == ("GET", "http://h:81/api/v2/delivery/")
    assert list(request.params) == [("authorization", TOKEN), ("requestid", "RA.1")]
    assert request.json is None and request.form is None


# An ID to poll and where the poll goes without the account's base URL.
POLL_HOSTS = [("RA.1", "https://smsapi.connectel.se/api/v2/delivery/")]


# The reference's example repeats "statusDesc"; JSON readers keep the last one.
POLL_SINGLE = b"""{
    "action": "send",
    "date": "2020-01-01 14:00:00",
    "message": "",
    "recipient": "46700000000",
    "requestid": "RMH8ZYJWCWJYIB5A.15986181942392678",
    "sender": "conntest",
    "statusDesc": "",
    "statusDesc": "",
    "statusInt": 1,
    "statusStr": "DELIVRD",
    "url": "https://smsapi.connectel.se/status/RMH8ZYJWCWJYIB5A.15986181942392678"
}"""

POLL_BULK = {
    "action": "send",
    "bulkid": "BFQKACELG.15986181942392488",
    "message": "",
    "recipient": [
        {
            "date": "2020-01-01 14:00:00",
            "recipient": "4670000000",
            "requestid": "RMH8ZYXWCWJYIB5A.15986181942392678",
            "statusDesc": "",
            "statusInt": 1,
            "statusStr": "DELIVRD",
            "url": "",
        },
        {
            "date": "2020-01-01 14:00:00",
            "recipient": "4670000001",
            "requestid": "RA5KDTPIIYSCAO6W.15986181942392778",
            "statusDesc": "",
            "statusInt": 8,
            "statusStr": "EXPIRED",
            "url": "",
        },
    ],
    "sender": "IKEA",
}


def test_a_request_id_poll_answer_gives_one_report() -> None:
    [report] = handler.parse_poll_response(ACCOUNT, (), wire.answer(200, POLL_SINGLE))
    assert report.request_id == "RMH8ZYJWCWJYIB5A.15986181942392678"
    assert (report.status, report.recipient, report.error_code) == (
        Status.DELIVERED,
        "46700000000",
        "1",
    )


def test_a_bulk_id_poll_answer_gives_a_report_per_recipient() -> None:
    reports = handler.parse_poll_response(ACCOUNT, (), wire.answer(200, POLL_BULK))
    assert [(r.request_id, r.status) for r in reports] == [
        ("RMH8ZYXWCWJYIB5A.15986181942392678", Status.DELIVERED),
        ("RA5KDTPIIYSCAO6W.15986181942392778", Status.EXPIRED),
    ]


def test_unreadable_poll_answers_and_entries_give_no_reports() -> None:
    broken = {**POLL_BULK, "recipient": [{"requestid": "R1", "statusInt": "x"}, "junk"]}
    assert handler.parse_poll_response(ACCOUNT, (), wire.answer(200, broken)) == []
    assert (
        handler.parse_poll_response(ACCOUNT, (), wire.answer(401, {"error": "Unauthorized"})) == []
    )
    assert handler.parse_poll_response(ACCOUNT, (), wire.answer(200, wire.HTML_PAGE)) == []


def test_connectel_has_no_balance_call() -> None:
    assert handler.balance_request(ACCOUNT, BASE) is None
    with pytest.raises(ValueError, match="no balance"):
        handler.parse_balance(ACCOUNT, wire.answer(200, {}))


# -- the fake over real HTTP -------------------------------------------------------


class Rig(rigging.Wiring[FakeConnectel]):
    def batch(self, *numbers: str) -> SendBatch:
        return batch(*numbers, base_url=self.base_url)

    async def send(self, sent: SendBatch, account: Account = ACCOUNT) -> WireResponse:
        return await self.execute(handler.send_request(account, sent))


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    async with rigging.wired(Rig, FakeConnectel(token=TOKEN)) as rig:
        yield rig


@pytest.mark.parametrize("account", [ACCOUNT, FORM_ACCOUNT], ids=["json", "form"])
async def test_a_single_send_is_accepted_by_the_fake_with_its_request_id(
    rig: Rig, account: Account
) -> None:
    sent = rig.batch("+46700000000")
    response = await rig.send(sent, account)
    [result] = handler.parse_send_response(account, sent, response)
    assert result.outcome is Outcome.ACCEPTED
    [request_id] = result.request_ids
    assert request_id.startswith("R") and request_id[16] == "."
    assert rig.fake.messages[request_id]["recipient"] == "46700000000"
    assert rig.fake.sent == [
        {"authorization": TOKEN, "sender": "IKEA", "message": "Hello", "recipient": "46700000000"}
    ]


@pytest.mark.parametrize("account", [ACCOUNT, FORM_ACCOUNT], ids=["json", "form"])
async def test_a_bulk_send_gets_one_request_id_per_message_under_a_bulk_id(
    rig: Rig, account: Account
) -> None:
    sent = rig.batch("+46700000000", "+46700000001", "+46700000000")
    results = handler.parse_send_response(account, sent, await rig.send(sent, account))
    assert [r.outcome for r in results] == [Outcome.ACCEPTED] * 3
    ids = [r.request_ids[0] for r in results]
    assert len(set(ids)) == 3
    assert [rig.fake.messages[i]["key"] for i in ids] == ["0", "1", "2"]
    [bulkid] = rig.fake.bulks
    assert bulkid.startswith("B") and rig.fake.bulks[bulkid] == ids


async def test_a_wrong_token_is_an_account_error(rig: Rig) -> None:
    wrong = replace(ACCOUNT, credentials={"token": "nope"})
    sent = rig.batch("+46700000000")
    [result] = handler.parse_send_response(wrong, sent, await rig.send(sent, wrong))
    assert (result.outcome, result.error_code) == (Outcome.ACCOUNT_ERROR, "401")
    assert rig.fake.sent == [] and rig.fake.requests_seen == 1


async def test_a_number_the_fake_rejects_is_refused_with_its_reason(rig: Rig) -> None:
    sent = rig.batch("+4670")
    [result] = handler.parse_send_response(ACCOUNT, sent, await rig.send(sent))
    assert (result.outcome, result.error_code) == (Outcome.REFUSED, "400")
    assert "internationally formatted" in result.error_text


async def test_planned_failures_are_transient_then_the_send_goes_through(rig: Rig) -> None:
    rig.fake.fail_next = [503, 429]
    sent = rig.batch("+46700000000")
    outcomes = []
    for _ in range(3):
        [result] = handler.parse_send_response(ACCOUNT, sent, await rig.send(sent))
        outcomes.append((result.outcome, result.retry_after))
    assert outcomes == rigging.BUSY_THEN_SLOWED_THEN_SENT
    assert rig.fake.requests_seen == 3 and len(rig.fake.sent) == 1


async def test_a_hung_send_is_accepted_although_the_client_times_out(rig: Rig) -> None:
    rig.fake.hang_next = 1
    request = handler.send_request(ACCOUNT, rig.batch("+46700000000"))
    with pytest.raises(httpx.ReadTimeout):
        await rig.client.request(request.method, request.url, json=request.json, timeout=0.2)
    assert len(rig.fake.sent) == 1 and len(rig.fake.messages) == 1
    rig.fake.release_hung()


@pytest.mark.parametrize("fmt", ["json", "form", "get"])
async def test_pushed_reports_reach_the_callback_and_parse(rig: Rig, fmt: str) -> None:
    rig.fake.dlr_format = fmt
    sent = rig.batch("+46700000000")
    [result] = handler.parse_send_response(ACCOUNT, sent, await rig.send(sent))
    await rig.fake.drain()
    reports = [r for call in rig.receiver.calls for r in handler.parse_dlr(ACCOUNT, call)]
    assert [(r.request_id, r.status) for r in reports] == [
        (result.request_ids[0], Status.ENROUTE),
        (result.request_ids[0], Status.DELIVERED),
    ]
    assert {r.recipient for r in reports} == {"46700000000"}
    assert rig.fake.dlr_acks == [200, 200]


async def test_reports_can_race_ahead_of_the_send_answer(rig: Rig) -> None:
    rig.fake.dlr_before_response = True
    rig.fake.dlr_plan = [(1, "DELIVRD")]
    sent = rig.batch("+46700000000", "+46700000001")
    response = await rig.send(sent)
    arrived_first = [handler.parse_dlr(ACCOUNT, c)[0].request_id for c in rig.receiver.calls]
    results = handler.parse_send_response(ACCOUNT, sent, response)
    assert arrived_first == [r.request_ids[0] for r in results]


async def test_duplicates_shuffling_and_per_recipient_plans_shape_the_pushes(rig: Rig) -> None:
    rig.fake.duplicates = 1
    rig.fake.shuffle = True
    rig.fake.dlr_plan_for = lambda number: (
        [(0, "QUEUE"), (5, "UNDELIV")] if number.endswith("1") else [(1, "DELIVRD")]
    )
    sent = rig.batch("+46700000000", "+46700000001")
    results = handler.parse_send_response(ACCOUNT, sent, await rig.send(sent))
    await rig.fake.drain()
    reports = [handler.parse_dlr(ACCOUNT, c)[0] for c in rig.receiver.calls]
    first, second = (r.request_ids[0] for r in results)
    pushed = sorted((r.request_id, r.error_code) for r in reports)
    assert pushed == sorted([(first, "1")] * 2 + [(second, "0")] * 2 + [(second, "5")] * 2)
    in_plan_order = [(first, "1")] * 2 + [(second, "0")] * 2 + [(second, "5")] * 2
    assert [(r.request_id, r.error_code) for r in reports] != in_plan_order


async def test_a_failing_callback_is_recorded_in_the_acks(rig: Rig) -> None:
    rig.receiver.status = 503
    status = await rig.fake.push_dlr("RX.1", "46700000000", 1, "DELIVRD")
    assert status == 503 and rig.fake.dlr_acks == [503]


async def test_polls_reflect_the_pushed_statuses_for_request_and_bulk_ids(rig: Rig) -> None:
    rig.fake.dlr_plan_for = lambda number: [(0, "ENROUTE"), (8 if number[-1] == "1" else 1, "X")]
    sent = rig.batch("+46700000000", "+46700000001")
    results = handler.parse_send_response(ACCOUNT, sent, await rig.send(sent))
    await rig.fake.drain()
    [bulkid] = rig.fake.bulks
    by_bulk = await rig.execute(_poll(rig, bulkid))
    assert [r.status for r in handler.parse_poll_response(ACCOUNT, (), by_bulk)] == [
        Status.DELIVERED,
        Status.EXPIRED,
    ]
    by_request = await rig.execute(_poll(rig, results[1].request_ids[0]))
    [report] = handler.parse_poll_response(ACCOUNT, (), by_request)
    assert (report.request_id, report.status) == (results[1].request_ids[0], Status.EXPIRED)
    unknown = await rig.execute(_poll(rig, "RNOPE.1"))
    assert unknown.status_code == 404
    assert handler.parse_poll_response(ACCOUNT, (), unknown) == []


def _poll(rig: Rig, request_id: str) -> WireRequest:
    request = handler.poll_request(ACCOUNT, rig.base_url, [request_id])
    assert request is not None
    return request


@pytest.mark.parametrize("fmt", ["json", "form"])
async def test_a_pushed_inbound_sms_reaches_the_callback_and_parses(rig: Rig, fmt: str) -> None:
    rig.fake.inbound_format = fmt
    status = await rig.fake.push_inbound("35890010000", "3581000000", "Hi there", "RIN.1")
    assert status == 200
    [call] = rig.receiver.calls
    [sms] = handler.parse_inbound(ACCOUNT, call)
    assert sms == InboundSms("35890010000", "3581000000", "Hi there", "RIN.1")


def test_a_single_answer_to_a_bulk_request_only_accepts_the_number_it_names() -> None:
    sent = batch("+46700000001", "+46700000000", "+46700000000")
    body = {**SINGLE_ANSWER, "recipient": "46700000000"}
    results = handler.parse_send_response(ACCOUNT, sent, wire.answer(200, body))
    assert [r.outcome for r in results] == [Outcome.REFUSED, Outcome.ACCEPTED, Outcome.REFUSED]


def test_an_empty_bulk_answer_keeps_the_body_error_for_every_message() -> None:
    body = {"recipient": [], "statusInt": 2, "statusStr": "REJECTD", "message": "sender blocked"}
    results = handler.parse_send_response(
        ACCOUNT, batch("+46700000000", "+46700000001"), wire.answer(200, body)
    )
    assert {(r.outcome, r.error_code) for r in results} == {(Outcome.REFUSED, "2")}
    assert all("sender blocked" in r.error_text for r in results)


AMBIGUOUS = rigging.Ambiguous(
    fake=lambda: FakeConnectel(TOKEN),
    account=rigging.account_fields("conn", "connectel", {"token": TOKEN}, "IKEA"),
    late_report=lambda fake, to: fake.push_dlr(next(iter(fake.messages)), to, 1, "DELIVRD"),
)
"""Connectel echoes nothing of ours: a lost answer is found by its recipient."""
