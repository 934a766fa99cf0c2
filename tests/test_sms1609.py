"""1609SMS: the handler against the provider's page, the fake over HTTP, and the whole loop.

The first part feeds the handler the shapes of 1609SMS's "SMS Gateway API" page with no
server at all. The second serves `FakeSms1609` on loopback and drives it with the
handler's own requests. The last runs a real smsgw against the fake: 1609SMS pushes
nothing, so delivery comes from smsgw's poller asking the status page.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import strategies as st

from handlers.base import CallbackRequest, WireResponse
from handlers.sms1609 import Sms1609Handler, parse_poll_status
from service.model import Account, Balance, Outcome, OutgoingSms, RecipientResult, SendBatch, Status
from tests import rig as rigging
from tests import wire
from tests.conftest import Gateway
from tests.fake_sms1609 import DELIVERY_CODES, ERROR_CODES, FakeSms1609

USER = "acme"
PASSWORD = "pw-s3cret!"
BASE = "http://1609.test"
handler = Sms1609Handler()
LOGIN = {"username": USER, "password": PASSWORD}
ACCOUNT = Account(name="s1609", provider="sms1609", credentials=LOGIN, sender="IKEA")
POST_ACCOUNT = replace(ACCOUNT, options={"method": "POST"})
SHA1_ACCOUNT = replace(ACCOUNT, options={"sha1_password": True})
TEST_ACCOUNT = replace(ACCOUNT, options={"test_mode": True})


def batch(*numbers: str, text: str = "Hello", segments: int = 1, base_url: str = BASE) -> SendBatch:
    messages = wire.outgoing(numbers, text, "IKEA", segments=segments)
    return SendBatch(messages, base_url, dlr_url="")


def one(response: WireResponse, account: Account = ACCOUNT) -> Any:
    [result] = handler.parse_send_response(account, batch("+447012345678"), response)
    return result


# -- send requests -----------------------------------------------------------------


# A send is a GET of the gateway page with the documented fields, in order.
GET_SENDS = [
    (
        batch("+447012345678"),
        f"{BASE}/module/gateway.php",
        [
            ("clientuser", USER),
            ("clientpwd", PASSWORD),
            ("message", "Hello"),
            ("to", "447012345678"),
            ("sender", "IKEA"),
            ("logging", "yes"),
            ("delivery", "yes"),
        ],
    )
]


def test_the_post_method_sends_the_same_fields_as_a_form() -> None:
    request = handler.send_request(POST_ACCOUNT, batch("+447012345678"))
    assert (request.method, request.url) == ("POST", f"{BASE}/module/gateway.php")
    assert request.form is not None and list(request.params) == []
    assert list(request.form) == list(handler.send_request(ACCOUNT, batch("+447012345678")).params)
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"


@pytest.mark.parametrize("method", ["post", " Post "])
def test_the_method_option_ignores_case_and_space(method: str) -> None:
    account = replace(ACCOUNT, options={"method": method})
    assert handler.send_request(account, batch("+447012345678")).method == "POST"


def test_the_sha1_option_sends_the_lowercase_hex_digest_of_the_password() -> None:
    # FIPS 180 test vector: SHA-1("abc").
    account = replace(SHA1_ACCOUNT, credentials={"username": USER, "password": "abc"})
    request = handler.send_request(account, batch("+447012345678"))
    assert dict(request.params)["clientpwd"] == "a9993e364706816aba3e25717850c26c9cd0d89d"


def test_without_the_sha1_option_a_stored_digest_travels_unchanged() -> None:
    digest = hashlib.sha1(PASSWORD.encode()).hexdigest()  # noqa: S324
    account = replace(ACCOUNT, credentials={"username": USER, "password": digest})
    assert dict(handler.send_request(account, batch("+447012345678")).params)["clientpwd"] == (
        digest
    )


@pytest.mark.parametrize("value", [False, "no", "false", 0])
def test_logging_can_be_switched_off(value: Any) -> None:
    account = replace(ACCOUNT, options={"logging": value})
    assert "logging" not in dict(handler.send_request(account, batch("+447012345678")).params)


def test_a_text_over_160_characters_is_sent_as_a_long_message() -> None:
    short = handler.send_request(ACCOUNT, batch("+447012345678", text="x" * 160))
    long = handler.send_request(ACCOUNT, batch("+447012345678", text="x" * 161, segments=2))
    assert "type" not in dict(short.params)
    assert dict(long.params)["type"] == "long"


def test_a_short_text_of_several_segments_is_sent_as_a_long_message_too() -> None:
    request = handler.send_request(ACCOUNT, batch("+447012345678", text="ж" * 100, segments=2))
    assert dict(request.params)["type"] == "long"


def test_test_mode_asks_1609sms_to_check_without_sending() -> None:
    request = handler.send_request(TEST_ACCOUNT, batch("+447012345678"))
    assert dict(request.params)["test"] == "yes"
    assert "test" not in dict(handler.send_request(ACCOUNT, batch("+447012345678")).params)


SEND_URLS = [
    (batch("+447012345678", base_url="http://h:81/"), "http://h:81/module/gateway.php"),
    (batch("+447012345678", base_url=""), "http://217.19.227.48/module/gateway.php"),
]


def test_several_messages_would_share_one_request_and_its_one_sms_id() -> None:
    sent = batch("+447012345678", "+447012345679")
    assert dict(handler.send_request(ACCOUNT, sent).params)["to"] == "447012345678,447012345679"
    results = handler.parse_send_response(ACCOUNT, sent, wire.answer(200, "OK 1234567"))
    assert [r.request_ids for r in results] == [("1234567",), ("1234567",)]


# -- send answers ------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        "OK 1234567",
        "OK 1234567\n",
        "\ufeffOK 1234567\r\n",
        "ok 1234567",
        "OK: 1234567",
        "OK\t1234567",
    ],
)
def test_an_ok_with_an_sms_id_is_accepted_and_submitted(body: str) -> None:
    result = one(wire.answer(200, body))
    assert (result.outcome, result.request_ids, result.status) == (
        Outcome.ACCEPTED,
        ("1234567",),
        Status.SUBMITTED,
    )


def test_a_bare_ok_is_accepted_but_says_that_no_sms_id_came() -> None:
    for body in ("OK", "OK, message sent"):
        result = one(wire.answer(200, body))
        assert (result.outcome, result.request_ids) == (Outcome.ACCEPTED, ())
        assert "without an SMS ID" in result.error_text


@pytest.mark.parametrize("body", ["OK", "OK 1234567"])
def test_an_ok_in_test_mode_is_validated(body: str) -> None:
    result = one(wire.answer(200, body), TEST_ACCOUNT)
    assert (result.outcome, result.request_ids) == (Outcome.VALIDATED, ())
    assert "test=yes" in result.error_text


# Every error code of the page, and what it means for the message.
ERROR_TABLE = {
    "100": Outcome.ACCOUNT_ERROR,
    "101": Outcome.ACCOUNT_ERROR,
    "102": Outcome.REFUSED,
    "103": Outcome.REFUSED,
    "104": Outcome.ACCOUNT_ERROR,
    "105": Outcome.REFUSED,
    "106": Outcome.REFUSED,
    "107": Outcome.REFUSED,
    "108": Outcome.ACCOUNT_ERROR,
    "109": Outcome.SENDER_REJECTED,
    "110": Outcome.SENDER_REJECTED,
    "111": Outcome.SENDER_REJECTED,
    "112": Outcome.REFUSED,
    "113": Outcome.SENDER_REJECTED,
    "114": Outcome.REFUSED,
    "115": Outcome.ACCOUNT_ERROR,
    "116": Outcome.ACCOUNT_ERROR,
    "117": Outcome.SENDER_REJECTED,
    "118": Outcome.REFUSED,
    "119": Outcome.REFUSED,
    "120": Outcome.TRANSIENT,
    "150": Outcome.TRANSIENT,
}


def test_the_error_table_covers_every_code_of_the_page() -> None:
    assert sorted(ERROR_TABLE) == sorted(ERROR_CODES)


@pytest.mark.parametrize(("code", "outcome"), sorted(ERROR_TABLE.items()))
def test_every_documented_error_code_has_its_outcome(code: str, outcome: Outcome) -> None:
    result = one(wire.answer(200, f"ERROR {code}"))
    assert (result.outcome, result.error_code) == (outcome, code)
    assert result.error_text and result.request_ids == ()


@pytest.mark.parametrize(
    "body",
    ["ERROR: 104", "ERROR 1.0.4", "error 104", "ERROR 104\n", "ERROR-104", "ERROR 104."],
)
def test_error_answers_are_read_in_every_spelling(body: str) -> None:
    result = one(wire.answer(200, body))
    assert (result.outcome, result.error_code) == (Outcome.ACCOUNT_ERROR, "104")


def test_the_providers_own_error_text_is_kept() -> None:
    result = one(wire.answer(200, "ERROR 106 - No valid mobile number"))
    assert result.error_code == "106"
    assert result.error_text.endswith("No valid mobile number")


def test_a_transient_error_code_carries_retry_after() -> None:
    result = one(wire.answer(200, "ERROR 150", {"Retry-After": "30"}))
    assert (result.outcome, result.retry_after) == (Outcome.TRANSIENT, 30.0)


@pytest.mark.parametrize(("body", "code"), [("ERROR 999", "999"), ("ERROR", "ERROR")])
def test_an_unknown_or_missing_error_code_is_refused(body: str, code: str) -> None:
    result = one(wire.answer(200, body))
    assert (result.outcome, result.error_code) == (Outcome.REFUSED, code)
    assert "unknown" in result.error_text


@pytest.mark.parametrize(
    ("status", "outcome", "wait"),
    [
        (503, Outcome.TRANSIENT, 7.0),
        (429, Outcome.TRANSIENT, 7.0),
        (500, Outcome.UNKNOWN, None),
        (502, Outcome.UNKNOWN, None),
        (504, Outcome.UNKNOWN, None),
    ],
)
def test_throttling_and_unavailability_are_transient_other_server_errors_unknown(
    status: int, outcome: Outcome, wait: float | None
) -> None:
    result = one(wire.answer(status, "<html>busy</html>", {"retry-after": "7"}))
    assert (result.outcome, result.error_code, result.retry_after) == (outcome, str(status), wait)
    assert "busy" in result.error_text


def test_an_error_code_behind_a_bad_gateway_is_not_trusted() -> None:
    result = one(wire.answer(502, "ERROR 150"))
    assert (result.outcome, result.error_code) == (Outcome.UNKNOWN, "502")


def test_a_date_gone_by_in_retry_after_asks_for_no_wait() -> None:
    result = one(wire.answer(503, "", {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}))
    assert (result.outcome, result.retry_after) == (Outcome.TRANSIENT, 0.0)


@pytest.mark.parametrize("status", [401, 403])
def test_an_http_login_refusal_is_an_account_error(status: int) -> None:
    assert one(wire.answer(status, "Forbidden")).outcome is Outcome.ACCOUNT_ERROR


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (200, "<html><body>Welcome to 1609SMS</body></html>"),
        (200, ""),
        (200, '{"status": "ok"}'),
        (404, "Not Found"),
        (400, "OK 1234567"),
    ],
)
def test_anything_else_is_refused_with_what_came(status: int, body: str) -> None:
    result = one(wire.answer(status, body))
    assert (result.outcome, result.error_code) == (Outcome.REFUSED, str(status))
    assert f"HTTP {status}" in result.error_text


# Any answer to a send, with the batch and account it answers; the contract test
# parses it and asks `judge_any_answer` whether each result is one this provider may give.
ANY_SEND_ANSWER = wire.any_send_answer(
    wire.numbered_batches(batch, "+44701234567", 3),
    st.one_of(
        st.binary(max_size=200),
        st.text(max_size=80).map(str.encode),
        st.sampled_from([b"OK", b"OK 1", b"ERROR", b"ERROR 1.", b"ERROR .", b"\xff\xfeOK"]),
        st.builds(
            lambda c, s: f"ERROR {c}{s}".encode(),
            st.sampled_from(ERROR_CODES),
            st.text(max_size=10),
        ),
    ),
    accounts=st.sampled_from([ACCOUNT, TEST_ACCOUNT]),
    headers=st.dictionaries(
        st.sampled_from(["Retry-After", "retry-after", "X"]), st.text(max_size=20)
    ),
)


def judge_any_answer(results: list[RecipientResult], status: int) -> None:
    for result in results:
        assert result.outcome in Outcome
        if result.outcome is Outcome.ACCEPTED and result.request_ids:
            assert all(rid.strip() for rid in result.request_ids)


# -- callbacks: 1609SMS makes none -------------------------------------------------

CALLBACKS = [
    CallbackRequest("GET", "http://gw/callbacks/s1609/dlr?smsid=1", (("smsid", "1"),), {}, b""),
    CallbackRequest(
        "POST",
        "http://gw/callbacks/s1609/dlr",
        (),
        {"content-type": "application/x-www-form-urlencoded"},
        b"smsid=1234567&status=DELIVERED",
    ),
    CallbackRequest(
        "POST",
        "http://gw/callbacks/s1609/inbound",
        (),
        {"content-type": "application/json"},
        json.dumps({"from": "447012345678", "message": "hi"}).encode(),
    ),
]


@pytest.mark.parametrize("callback", CALLBACKS, ids=["get", "form", "json"])
def test_every_delivery_report_callback_is_invalid_as_1609sms_pushes_none(
    callback: CallbackRequest,
) -> None:
    wire.assert_dlr_invalid(handler, ACCOUNT, callback, match="polled")


@pytest.mark.parametrize("callback", CALLBACKS, ids=["get", "form", "json"])
def test_every_inbound_callback_is_invalid_as_its_format_is_undocumented(
    callback: CallbackRequest,
) -> None:
    wire.assert_inbound_invalid(handler, ACCOUNT, callback, match="no format")


def test_nothing_is_signed_and_no_inbound_answer_is_expected() -> None:
    handler.authenticate(ACCOUNT, CALLBACKS[0])  # raises nothing: there is no signature
    assert handler.inbound_answer(ACCOUNT, "reply") is None


# -- polling -----------------------------------------------------------------------


def test_a_poll_asks_the_status_page_for_the_first_sms_id_without_credentials() -> None:
    request = handler.poll_request(ACCOUNT, "http://h:81/", ["1234567", "7654321"])
    assert request is not None
    assert (request.method, request.url) == ("GET", "http://h:81/module/gatewayrapport.php")
    assert list(request.params) == [("smsid", "1234567")]
    assert PASSWORD not in repr(request) and USER not in repr(request)


# An ID to poll and where the poll goes without the account's base URL.
POLL_HOSTS = [("1234567", "http://217.19.227.48/module/gatewayrapport.php")]


POLL_TABLE: dict[str, Status | None] = {
    "DELIVERED": Status.DELIVERED,
    "NOT DELIVERED": Status.UNDELIVERED,
    "BUFFERED": Status.ENROUTE,
    "SUBMITTED": Status.ENROUTE,
    "REJECTED": Status.REJECTED,
    "NONE": None,
}


def test_the_poll_table_covers_every_delivery_code_of_the_page() -> None:
    assert sorted(POLL_TABLE) == sorted(DELIVERY_CODES)


@pytest.mark.parametrize(("code", "status"), POLL_TABLE.items())
def test_every_delivery_code_maps_to_its_status(code: str, status: Status | None) -> None:
    assert parse_poll_status(code) is status


@pytest.mark.parametrize(
    ("text", "status"),
    [
        ("not delivered", Status.UNDELIVERED),
        ("NOT_DELIVERED", Status.UNDELIVERED),
        ("NOTDELIVERED", Status.UNDELIVERED),
        ("NOT  DELIVERED\r\n", Status.UNDELIVERED),
        ("\ufeffDELIVERED\n", Status.DELIVERED),
        ("DELIVERED 2011-05-01 12:00", Status.DELIVERED),
        ("Buffered", Status.ENROUTE),
    ],
)
def test_delivery_codes_are_read_in_every_spelling(text: str, status: Status) -> None:
    assert parse_poll_status(text) is status


@pytest.mark.parametrize("text", ["", "DELIVEREDX", "UNKNOWN", "ERROR 104", "<html>x</html>"])
def test_an_answer_without_a_delivery_code_has_no_status(text: str) -> None:
    assert parse_poll_status(text) is None


@pytest.mark.parametrize("code", [c for c, s in POLL_TABLE.items() if s is not None])
def test_a_poll_answer_reports_the_polled_sms_id_with_its_code(code: str) -> None:
    [report] = handler.parse_poll_response(ACCOUNT, ["1234567"], wire.answer(200, code + "\n"))
    assert (report.request_id, report.status, report.error_code) == (
        "1234567",
        POLL_TABLE[code],
        code,
    )
    assert report.error_text and report.recipient == ""


UNREADABLE_POLL_ANSWERS = [
    pytest.param(["1234567"], wire.answer(200, "NONE"), id="none"),
    pytest.param([], wire.answer(200, "DELIVERED"), id="no-id"),
    pytest.param(["1234567"], wire.answer(500, "DELIVERED"), id="http-error"),
    pytest.param(["1234567"], wire.answer(200, "ERROR 104"), id="error-answer"),
    pytest.param(["1234567"], wire.answer(200, b"\xff\xfe"), id="garbage"),
]


# -- balance -----------------------------------------------------------------------


def test_the_credits_call_is_the_gateway_page_with_action_credits() -> None:
    request = wire.balance_call(
        handler, ACCOUNT, "http://h:81", "GET", "http://h:81/module/gateway.php"
    )
    assert list(request.params) == [
        ("clientuser", USER),
        ("clientpwd", PASSWORD),
        ("action", "credits"),
    ]
    posted = handler.balance_request(POST_ACCOUNT, "")
    assert posted is not None and posted.form is not None
    assert (posted.method, posted.url) == ("POST", "http://217.19.227.48/module/gateway.php")


@pytest.mark.parametrize(
    ("body", "amount"), [("476", 476.0), ("476\n", 476.0), ("12.5", 12.5), ("0", 0.0)]
)
def test_a_bare_number_is_the_balance_in_credits(body: str, amount: float) -> None:
    assert handler.parse_balance(ACCOUNT, wire.answer(200, body)) == Balance(amount, "credits")


BALANCE_ERRORS = [
    (wire.answer(200, "ERROR 104"), "ERROR 104"),
    (wire.answer(200, "ERROR 1.1.6"), "ERROR 116"),
    (wire.answer(500, "oops"), "HTTP 500"),
    (wire.answer(200, "<html>login</html>"), "no number"),
    (wire.answer(200, ""), "no number"),
]


# -- the fake over real HTTP -------------------------------------------------------


class Rig(rigging.Wiring[FakeSms1609]):
    def batch(self, *numbers: str, text: str = "Hello", segments: int = 1) -> SendBatch:
        return batch(*numbers, text=text, segments=segments, base_url=self.base_url)

    async def send(self, sent: SendBatch, account: Account = ACCOUNT) -> Any:
        response = await self.execute(handler.send_request(account, sent))
        [result] = handler.parse_send_response(account, sent, response)
        return result

    async def poll(self, sms_id: str) -> list[Any]:
        request = handler.poll_request(ACCOUNT, self.base_url, [sms_id])
        assert request is not None
        return handler.parse_poll_response(ACCOUNT, [sms_id], await self.execute(request))

    async def balance(self, account: Account = ACCOUNT) -> Balance:
        request = handler.balance_request(account, self.base_url)
        assert request is not None
        return handler.parse_balance(account, await self.execute(request))


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    """1609SMS makes no callbacks: the receiver stays idle."""
    async with rigging.wired(Rig, FakeSms1609(USER, PASSWORD), callbacks=()) as rig:
        yield rig


@pytest.mark.parametrize(
    "account", [ACCOUNT, POST_ACCOUNT, SHA1_ACCOUNT], ids=["get", "post", "sha1"]
)
async def test_a_send_is_accepted_by_the_fake_with_its_sms_id(rig: Rig, account: Account) -> None:
    result = await rig.send(rig.batch("+447012345678"), account)
    assert (result.outcome, result.status) == (Outcome.ACCEPTED, Status.SUBMITTED)
    [sms_id] = result.request_ids
    assert rig.fake.messages[sms_id]["to"] == ["447012345678"]
    [fields] = rig.fake.sent
    assert {k: fields[k] for k in ("message", "to", "sender", "logging", "delivery")} == {
        "message": "Hello",
        "to": "447012345678",
        "sender": "IKEA",
        "logging": "yes",
        "delivery": "yes",
    }
    assert rig.fake.credits == 475


async def test_spaces_and_non_ascii_text_arrive_intact(rig: Rig) -> None:
    text = "this is a test: 5 € + ümlaut & more"
    await rig.send(rig.batch("+447012345678", text=text))
    assert rig.fake.sent[0]["message"] == text


async def test_an_uppercase_digest_is_refused_like_a_wrong_password(rig: Rig) -> None:
    upper = hashlib.sha1(PASSWORD.encode()).hexdigest().upper()  # noqa: S324
    account = replace(ACCOUNT, credentials={"username": USER, "password": upper})
    result = await rig.send(rig.batch("+447012345678"), account)
    assert (result.outcome, result.error_code) == (Outcome.ACCOUNT_ERROR, "104")


@pytest.mark.parametrize(
    ("credentials", "code"),
    [
        ({"username": USER, "password": "wrong"}, "104"),
        ({"password": PASSWORD}, "100"),
        ({"username": USER}, "101"),
    ],
)
async def test_a_bad_login_is_an_account_error(
    rig: Rig, credentials: dict[str, str], code: str
) -> None:
    result = await rig.send(rig.batch("+447012345678"), replace(ACCOUNT, credentials=credentials))
    assert (result.outcome, result.error_code) == (Outcome.ACCOUNT_ERROR, code)
    assert rig.fake.sent == [] and rig.fake.requests_seen == 1


def _setup(fake: FakeSms1609, knob: str) -> None:
    if knob == "unreachable":
        fake.unreachable_prefixes = {"4479"}
    elif knob == "no-long":
        fake.no_long_prefixes = {"4479"}
    elif knob == "banned":
        fake.banned_senders = {"IKEA"}
    elif knob == "no-credit":
        fake.credits = 0
    elif knob == "blocked":
        fake.blocked = "115"
    elif knob == "maintenance":
        fake.maintenance = True


@pytest.mark.parametrize(
    ("knob", "number", "sender", "text", "code", "outcome"),
    [
        ("", "+4470", "IKEA", "Hi", "106", Outcome.REFUSED),
        ("unreachable", "+447912345678", "IKEA", "Hi", "107", Outcome.REFUSED),
        ("no-long", "+447912345678", "IKEA", "x" * 200, "119", Outcome.REFUSED),
        ("", "+447012345678", "IKEA", "x" * 460, "118", Outcome.REFUSED),
        ("", "+447012345678", "", "Hi", "109", Outcome.SENDER_REJECTED),
        ("", "+447012345678", "447012345678", "Hi", "110", Outcome.SENDER_REJECTED),
        ("", "+447012345678", "ACME Widgets", "Hi", "111", Outcome.SENDER_REJECTED),
        ("", "+447012345678", "Café", "Hi", "113", Outcome.SENDER_REJECTED),
        ("banned", "+447012345678", "IKEA", "Hi", "117", Outcome.SENDER_REJECTED),
        ("no-credit", "+447012345678", "IKEA", "Hi", "108", Outcome.ACCOUNT_ERROR),
        ("blocked", "+447012345678", "IKEA", "Hi", "115", Outcome.ACCOUNT_ERROR),
        ("maintenance", "+447012345678", "IKEA", "Hi", "150", Outcome.TRANSIENT),
    ],
)
async def test_the_fakes_own_checks_answer_the_documented_codes(
    rig: Rig, knob: str, number: str, sender: str, text: str, code: str, outcome: Outcome
) -> None:
    _setup(rig.fake, knob)
    message = OutgoingSms("m0", number, text, sender, "GSM-7", 1 if len(text) <= 160 else 2)
    result = await rig.send(SendBatch((message,), rig.base_url, ""))
    assert (result.outcome, result.error_code) == (outcome, code)
    assert rig.fake.sent == []


@pytest.mark.parametrize("code", ERROR_CODES)
async def test_every_error_code_the_fake_answers_reaches_its_outcome(rig: Rig, code: str) -> None:
    rig.fake.error_next = [code]
    result = await rig.send(rig.batch("+447012345678"))
    assert (result.outcome, result.error_code) == (ERROR_TABLE[code], code)
    assert (await rig.send(rig.batch("+447012345678"))).outcome is Outcome.ACCEPTED


async def test_a_long_message_goes_as_type_long_and_costs_its_parts(rig: Rig) -> None:
    result = await rig.send(rig.batch("+447012345678", text="y" * 300, segments=2))
    assert result.outcome is Outcome.ACCEPTED
    assert rig.fake.sent[0]["type"] == "long"
    assert rig.fake.messages[result.request_ids[0]]["parts"] == 2
    assert rig.fake.credits == 474


async def test_test_mode_is_validated_and_nothing_is_sent_or_spent(rig: Rig) -> None:
    result = await rig.send(rig.batch("+447012345678"), TEST_ACCOUNT)
    assert result.outcome is Outcome.VALIDATED
    assert rig.fake.sent == [] and len(rig.fake.tested) == 1 and rig.fake.credits == 476
    bad = await rig.send(rig.batch("+4470"), TEST_ACCOUNT)
    assert (bad.outcome, bad.error_code) == (Outcome.REFUSED, "106")


async def test_429_and_503_are_retried_a_500_is_unknown_then_a_send_goes_through(rig: Rig) -> None:
    rig.fake.fail_next = [503, 429, 500]
    outcomes = [
        (r.outcome, r.retry_after)
        for r in [await rig.send(rig.batch("+447012345678")) for _ in range(4)]
    ]
    assert outcomes == [
        (Outcome.TRANSIENT, 1.0),
        (Outcome.TRANSIENT, 1.0),
        (Outcome.UNKNOWN, None),
        (Outcome.ACCEPTED, None),
    ]
    assert rig.fake.requests_seen == 4 and len(rig.fake.sent) == 1


async def test_a_trailing_newline_after_each_answer_changes_nothing(rig: Rig) -> None:
    rig.fake.answer_suffix = "\n"
    result = await rig.send(rig.batch("+447012345678"))
    assert result.outcome is Outcome.ACCEPTED
    [report] = await rig.poll(result.request_ids[0])
    assert report.status is Status.ENROUTE
    assert (await rig.balance()).amount == 475


async def test_polls_follow_the_status_plan_one_step_per_poll(rig: Rig) -> None:
    rig.fake.status_plan_for = lambda number: (
        ["BUFFERED", "NOT DELIVERED"] if number.endswith("9") else ["SUBMITTED", "DELIVERED"]
    )
    good = (await rig.send(rig.batch("+447012345678"))).request_ids[0]
    bad = (await rig.send(rig.batch("+447012345679"))).request_ids[0]
    seen = [
        (r.request_id, r.status)
        for sid in (good, bad, good, bad, good)
        for r in await rig.poll(sid)
    ]
    assert seen == [
        (good, Status.ENROUTE),
        (bad, Status.ENROUTE),
        (good, Status.DELIVERED),
        (bad, Status.UNDELIVERED),
        (good, Status.DELIVERED),
    ]
    assert rig.fake.polls == [good, bad, good, bad, good]


async def test_a_rejected_or_unknown_sms_id_polls_as_reported(rig: Rig) -> None:
    sms_id = (await rig.send(rig.batch("+447012345678"))).request_ids[0]
    rig.fake.set_status(sms_id, "REJECTED")
    [report] = await rig.poll(sms_id)
    assert report.status is Status.REJECTED
    assert await rig.poll("999") == []


async def test_the_credits_call_reads_the_fakes_balance(rig: Rig) -> None:
    assert await rig.balance() == Balance(476.0, "credits")
    await rig.send(rig.batch("+447012345678"))
    assert (await rig.balance(POST_ACCOUNT)).amount == 475
    wrong = replace(ACCOUNT, credentials={"username": USER, "password": "nope"})
    with pytest.raises(ValueError, match="104"):
        await rig.balance(wrong)


# -- the whole loop: a real smsgw against the fake ---------------------------------


@asynccontextmanager
async def sms1609_setup(
    tmp_path: Path,
    *,
    password: str = PASSWORD,
    options: dict[str, Any] | None = None,
    **settings: Any,
) -> AsyncIterator[tuple[Gateway, FakeSms1609]]:
    account = rigging.account_fields(
        "s1609", "sms1609", {"username": USER, "password": password}, "IKEA", options=options or {}
    )
    fake = FakeSms1609(USER, PASSWORD)
    settings = {"poll_first_after": 0.05, **settings}
    async with rigging.provider_gateway(tmp_path, fake, account, callbacks=(), **settings) as (
        gateway,
        created,
    ):
        assert created["pattern"] == "loop"
        assert created["credentials"]["password"] != password
        yield gateway, fake


async def settle(gateway: Gateway, ids: list[str]) -> dict[str, dict[str, Any]]:
    """1609SMS is polled, so there are no pushes to wait for."""
    return await rigging.settled_messages(gateway, ids)


async def test_sends_end_delivered_through_polling_one_request_each(tmp_path: Path) -> None:
    async with sms1609_setup(tmp_path) as (gateway, fake):
        sent = await gateway.send(to=["+447012345671", "+447012345672"], text="hi", account="s1609")
        messages = await settle(gateway, [m["id"] for m in sent])
        assert {m["status"] for m in messages.values()} == {"delivered"}
        assert sorted(f["to"] for f in fake.sent) == ["447012345671", "447012345672"]
        assert {m["request_id"] for m in messages.values()} == set(fake.messages)
        assert set(fake.polls) == set(fake.messages)
        assert await rigging.account_counters(gateway, "s1609") == rigging.tally(
            requests=2, accepted=2, delivered=2
        )


async def test_undelivered_and_rejected_statuses_come_through_polling(tmp_path: Path) -> None:
    plans = {"1": ["DELIVERED"], "2": ["BUFFERED", "NOT DELIVERED"], "3": ["REJECTED"]}
    async with sms1609_setup(tmp_path) as (gateway, fake):
        fake.status_plan_for = lambda number: plans[number[-1]]
        sent = await gateway.send(
            to=["+447012345671", "+447012345672", "+447012345673"], text="hi", account="s1609"
        )
        messages = await settle(gateway, [m["id"] for m in sent])
        by_number = {m["to"]: messages[m["id"]] for m in sent}
        assert by_number["+447012345671"]["status"] == "delivered"
        assert by_number["+447012345672"]["status"] == "undelivered"
        assert by_number["+447012345672"]["error"] == {
            "code": "NOT DELIVERED",
            "message": "not delivered",
        }
        assert by_number["+447012345673"]["status"] == "rejected"
        found = await rigging.account_counters(gateway, "s1609")
        assert (found["delivered"], found["undelivered"], found["pending"]) == (1, 2, 0)


async def test_a_refused_number_and_a_wrong_password_fail_with_the_providers_code(
    tmp_path: Path,
) -> None:
    async with sms1609_setup(tmp_path) as (gateway, fake):
        fake.unreachable_prefixes = {"4479"}
        [refused] = await gateway.send(to="+447912345678", text="hi", account="s1609")
        [done] = (await settle(gateway, [refused["id"]])).values()
        assert done["status"] == "failed" and done["error"]["code"] == "107"
        assert done["http_response"] == "ERROR 107"
        fake.password = "rotated"
        [locked] = await gateway.send(to="+447012345678", text="hi", account="s1609")
        [done] = (await settle(gateway, [locked["id"]])).values()
        assert done["status"] == "failed" and done["error"]["code"] == "104"
        assert fake.sent == []
        found = await rigging.account_counters(gateway, "s1609")
        assert (found["requests"], found["accepted"], found["failed"]) == (2, 0, 2)


async def test_a_stored_answer_never_holds_the_password(tmp_path: Path) -> None:
    async with sms1609_setup(tmp_path, max_attempts=2) as (gateway, fake):
        fake.echo_url_on_failure = True
        fake.fail_next = [503, 503]
        [message] = await gateway.send(to="+447012345678", text="hi", account="s1609")
        [done] = (await settle(gateway, [message["id"]])).values()
        assert done["status"] == "failed" and done["http_status"] == 503
        assert "clientpwd=" in done["http_response"]
        assert PASSWORD not in json.dumps(done)
        [ok] = await gateway.send(to="+447012345678", text="hi", account="s1609")
        [delivered] = (await settle(gateway, [ok["id"]])).values()
        assert delivered["http_response"].startswith("OK ")
        assert PASSWORD not in json.dumps(delivered)


async def test_the_balance_endpoint_reads_the_credits(tmp_path: Path) -> None:
    async with sms1609_setup(tmp_path, options={"method": "POST"}) as (gateway, _):
        response = await gateway.api.get("/v1/balance/s1609")
        assert response.status_code == 200
        assert response.json() == {"account": "s1609", "balance": 476.0, "currency": "credits"}


async def test_a_test_mode_account_only_has_1609sms_check_the_message(tmp_path: Path) -> None:
    async with sms1609_setup(tmp_path, options={"test_mode": True}) as (gateway, fake):
        [message] = await gateway.send(to="+447012345678", text="hi", account="s1609")
        [done] = (await settle(gateway, [message["id"]])).values()
        assert done["status"] != "delivered" and done["request_id"] in (None, "")
        assert len(fake.tested) == 1 and fake.sent == [] and fake.credits == 476


async def test_a_balance_past_any_float_is_a_provider_error_not_infinity(tmp_path: Path) -> None:
    """400 digits read as float are `inf`: a 502 that says so, never `Infinity` or a 500."""
    async with sms1609_setup(tmp_path) as (gateway, fake):
        fake.credits = 10**400
        answer = await gateway.api.get("/v1/balance/s1609")
        assert answer.status_code == 502, answer.text
        said = json.loads(answer.text)["error"]["message"]
        assert said.startswith("the provider's balance call failed") and "inf" not in said


async def test_the_sha1_digest_that_stands_for_the_password_is_scrubbed_like_it(
    tmp_path: Path,
) -> None:
    """With `sha1_password` the digest is what authenticates, so an answer that echoes
    it (1609SMS's error pages quote the request) keeps it out of every view."""
    async with sms1609_setup(tmp_path, options={"sha1_password": True}) as (gateway, fake):
        wrong = "not-the-password"
        patched = await gateway.api.patch(
            "/v1/accounts/s1609", json={"credentials": {"password": wrong}}
        )
        assert patched.status_code == 200, patched.text
        digest = hashlib.sha1(wrong.encode()).hexdigest()  # noqa: S324
        fake.echo = [digest]
        [message] = await gateway.send(to="+447012345678", text="hi", account="s1609")
        [settled] = (await rigging.settled_messages(gateway, [message["id"]], fake)).values()
        assert settled["status"] == "failed"
        shown = (await gateway.api.get(f"/v1/messages/{message['id']}")).text
        assert digest not in shown and "[redacted]" in shown


AMBIGUOUS = rigging.Ambiguous(
    fake=lambda: FakeSms1609(USER, PASSWORD),
    account=rigging.account_fields(
        "s1609", "sms1609", {"username": USER, "password": PASSWORD}, "IKEA"
    ),
    late_report=None,
    quiet="status_plan",
    callbacks=(),
)
"""1609SMS pushes nothing and its report page needs the SMS ID the lost answer held:
such a send can only be concluded."""
