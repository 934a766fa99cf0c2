"""Twilio: the handler against Twilio's wire format, the fake over HTTP, and the whole loop.

The first part feeds the handler the shapes of Twilio's REST API 2010-04-01 with no
server at all: the Message resource fixtures of twilio-python's tests, Twilio's error
JSON, status callbacks, and the signature vectors published with twilio-python's
RequestValidator tests. The second part serves `FakeTwilio` on loopback and drives it
with the handler's own requests. The third runs a real smsgw against the fake, whose
status callbacks are signed exactly as Twilio signs them.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest
from _pytest.mark import ParameterSet
from hypothesis import strategies as st

from handlers.base import CallbackRequest, WireResponse
from handlers.twilio import SEND_ERRORS, TwilioHandler, signature
from service.errors import Forbidden
from service.model import Account, InboundSms, Outcome, SendBatch, Status
from tests import rig as rigging
from tests import wire
from tests.conftest import Gateway, eventually
from tests.databases import db_count
from tests.fake_twilio import FakeTwilio, Plan, twilio_signature

SID = "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
TOKEN = "tw-auth-7f3a9c2e1d"
BASE = "http://twilio.test"
SENDER = "+15005550006"
DLR_URL = "https://gw.example/callbacks/tw/dlr?key=k3y"
handler = TwilioHandler()
LOGIN = {"account_sid": SID, "auth_token": TOKEN}
ACCOUNT = Account(name="tw", provider="twilio", credentials=LOGIN, sender=SENDER)


def batch(
    *numbers: str,
    text: str = "Hello",
    sender: str = SENDER,
    base_url: str = BASE,
    dlr_url: str = DLR_URL,
) -> SendBatch:
    messages = wire.outgoing(numbers, text, sender)
    return SendBatch(messages, base_url, dlr_url=dlr_url)


def forgeries(status: str) -> list[tuple[str, Any]]:
    """The fake's knobs that unsign, forge or tamper (to `status`) its status pushes."""
    return [("sign", False), ("signing_token", "forger"), ("tamper", {"MessageStatus": status})]


def form_callback(
    fields: Mapping[str, Any] | list[tuple[str, str]],
    *,
    url: str = DLR_URL,
    headers: Mapping[str, str] | None = None,
) -> CallbackRequest:
    return wire.form_callback(url, fields, headers)


def signed_form(
    fields: Mapping[str, str], *, url: str = DLR_URL, token: str = TOKEN
) -> CallbackRequest:
    """A form POST signed the way Twilio signs it (computed here independently)."""
    sig = twilio_signature(token, url, dict(fields))
    return form_callback(fields, url=url, headers={"X-Twilio-Signature": sig})


def json_callback(body: Any, *, url: str = DLR_URL) -> CallbackRequest:
    return wire.json_callback(url, body)


def get_callback(fields: Mapping[str, Any], *, url: str = DLR_URL) -> CallbackRequest:
    query = tuple((k, str(v)) for k, v in fields.items())
    full = f"{url}&{urlencode(query)}"
    return CallbackRequest("GET", full, query, {}, b"")


# -- send requests -----------------------------------------------------------------


def test_a_message_is_a_form_post_to_the_accounts_messages_resource() -> None:
    request = handler.send_request(ACCOUNT, batch("+46700000001"))
    assert request.method == "POST"
    assert request.url == f"{BASE}/2010-04-01/Accounts/{SID}/Messages.json"
    assert request.json is None
    assert request.form == [
        ("To", "+46700000001"),
        ("From", SENDER),
        ("Body", "Hello"),
        ("StatusCallback", f"{DLR_URL}&smsgw_message=m0"),  # our reference rides along
    ]
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert request.headers["Accept"] == "application/json"


def test_the_request_authenticates_with_basic_auth_of_sid_and_token() -> None:
    request = handler.send_request(ACCOUNT, batch("+46700000001"))
    scheme, _, encoded = request.headers["Authorization"].partition(" ")
    assert scheme == "Basic"
    assert base64.b64decode(encoded).decode() == f"{SID}:{TOKEN}"
    assert TOKEN not in request.url and all(TOKEN not in v for _, v in request.form or ())


def test_a_messaging_service_replaces_the_from_number() -> None:
    account = replace(ACCOUNT, options={"messaging_service_sid": "MG" + "b" * 32})
    request = handler.send_request(account, batch("+46700000001"))
    fields = dict(request.form or ())
    assert fields["MessagingServiceSid"] == "MG" + "b" * 32
    assert "From" not in fields


def test_a_validity_period_option_is_sent_in_seconds() -> None:
    account = replace(ACCOUNT, options={"validity_period": 600})
    fields = dict(handler.send_request(account, batch("+46700000001")).form or ())
    assert fields["ValidityPeriod"] == "600"


@pytest.mark.parametrize(("remaining", "sent"), [(1, "1"), (599, "599"), (86400, "36000")])
def test_a_messages_own_validity_is_sent_in_seconds_within_twilios_36000(
    remaining: int, sent: str
) -> None:
    account = replace(ACCOUNT, options={"validity_period": 600})
    request = batch("+46700000001")
    valid = replace(request, messages=(replace(request.messages[0], validity=remaining),))
    fields = dict(handler.send_request(account, valid).form or ())
    assert fields["ValidityPeriod"] == sent


def test_no_status_callback_is_sent_without_a_dlr_url() -> None:
    fields = dict(handler.send_request(ACCOUNT, batch("+46700000001", dlr_url="")).form or ())
    assert "StatusCallback" not in fields


def test_the_body_is_sent_exactly_and_the_fallback_sender_is_used_when_given() -> None:
    text = "Åter: 50% off & <more>\nsee you"
    request = handler.send_request(ACCOUNT, batch("+46700000001", text=text, sender="IKEA"))
    fields = dict(request.form or ())
    assert (fields["Body"], fields["From"]) == (text, "IKEA")


@pytest.mark.parametrize("base_url", ["http://h:81", "http://h:81/"])
def test_the_path_follows_the_base_url_and_defaults_to_twilios_host(base_url: str) -> None:
    request = handler.send_request(ACCOUNT, batch("+46700000001", base_url=base_url))
    assert request.url == f"http://h:81/2010-04-01/Accounts/{SID}/Messages.json"
    default = handler.send_request(ACCOUNT, batch("+46700000001", base_url=""))
    assert default.url == f"https://api.twilio.com/2010-04-01/Accounts/{SID}/Messages.json"


# -- send answers ------------------------------------------------------------------

# twilio-python's own fixture for a create (tests/integration/api/v2010/account/test_message.py).
CREATED: dict[str, Any] = {
    "account_sid": "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "api_version": "2010-04-01",
    "body": "O Slash: \u00d8, PoP: \ud83d\udca9",
    "date_created": "Thu, 30 Jul 2015 20:12:31 +0000",
    "date_sent": "Thu, 30 Jul 2015 20:12:33 +0000",
    "date_updated": "Thu, 30 Jul 2015 20:12:33 +0000",
    "direction": "outbound-api",
    "error_code": None,
    "error_message": None,
    "from": "+14155552345",
    "messaging_service_sid": "MGaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "num_media": "0",
    "num_segments": "1",
    "price": "-0.00750",
    "price_unit": "USD",
    "sid": "SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "status": "sent",
    "subresource_uris": {
        "media": "/2010-04-01/Accounts/ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/Messages/"
        "SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/Media.json"
    },
    "to": "+14155552345",
    "uri": "/2010-04-01/Accounts/ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/Messages/"
    "SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.json",
}


def test_sdk_fixture_answer_is_accepted_with_its_sid_and_en_route_when_sent() -> None:
    # json.dumps escapes the lone surrogates of the fixture just as Twilio's JSON does.
    [result] = handler.parse_send_response(
        ACCOUNT, batch("+14155552345"), wire.answer(201, CREATED)
    )
    wire.assert_accepted(result, ("SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",), Status.ENROUTE)


@pytest.mark.parametrize("status", ["queued", "accepted", "scheduled", "sending", "", "new"])
def test_a_created_message_not_yet_at_the_carrier_is_submitted(status: str) -> None:
    body = {**CREATED, "status": status}
    [result] = handler.parse_send_response(ACCOUNT, batch("+14155552345"), wire.answer(201, body))
    assert (result.outcome, result.status) == (Outcome.ACCEPTED, Status.SUBMITTED)


@pytest.mark.parametrize("status", ["delivered", "read"])
def test_a_send_answer_never_finalizes_a_message(status: str) -> None:
    body = {**CREATED, "status": status}
    [result] = handler.parse_send_response(ACCOUNT, batch("+14155552345"), wire.answer(201, body))
    assert (result.outcome, result.status) == (Outcome.ACCEPTED, Status.ENROUTE)


@pytest.mark.parametrize(
    ("status", "error_code", "outcome", "code"),
    [
        ("failed", 30001, Outcome.TRANSIENT, "30001"),
        ("failed", 30002, Outcome.ACCOUNT_ERROR, "30002"),
        ("failed", None, Outcome.REFUSED, "failed"),
        ("canceled", None, Outcome.REFUSED, "canceled"),
        ("undelivered", 30003, Outcome.REFUSED, "30003"),
    ],
)
def test_a_message_created_dead_is_classified_by_its_error_code(
    status: str, error_code: int | None, outcome: Outcome, code: str
) -> None:
    # Twilio sends no status callback for a message's initial status, so a message
    # that is born failed must not wait for one.
    body = {**CREATED, "status": status, "error_code": error_code}
    [result] = handler.parse_send_response(ACCOUNT, batch("+14155552345"), wire.answer(201, body))
    assert (result.outcome, result.error_code, result.request_ids) == (outcome, code, ())
    assert "SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" in result.error_text


def twilio_error(code: int, message: str, status: int) -> dict[str, Any]:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


def twilio_refused(
    status: int, code: int, message: str, outcome: Outcome, *, id: str
) -> ParameterSet:
    """Twilio's error answer for `code`, classified under that code with its message."""
    return wire.refused(
        status, twilio_error(code, message, status), outcome, str(code), message, id=id
    )


# Every error code the handler knows for a message create, with its HTTP status.
ERROR_TABLE = [
    (10001, 401, Outcome.ACCOUNT_ERROR),
    (20003, 401, Outcome.ACCOUNT_ERROR),
    (20005, 401, Outcome.ACCOUNT_ERROR),
    (20403, 403, Outcome.ACCOUNT_ERROR),
    (20404, 404, Outcome.ACCOUNT_ERROR),
    (21408, 400, Outcome.ACCOUNT_ERROR),
    (21608, 400, Outcome.ACCOUNT_ERROR),
    (21609, 400, Outcome.ACCOUNT_ERROR),
    (21705, 400, Outcome.ACCOUNT_ERROR),
    (30002, 400, Outcome.ACCOUNT_ERROR),
    (63038, 400, Outcome.ACCOUNT_ERROR),
    (21212, 400, Outcome.SENDER_REJECTED),
    (21266, 400, Outcome.SENDER_REJECTED),
    (21401, 400, Outcome.SENDER_REJECTED),
    (21601, 400, Outcome.SENDER_REJECTED),
    (21603, 400, Outcome.SENDER_REJECTED),
    (21606, 400, Outcome.SENDER_REJECTED),
    (21612, 400, Outcome.SENDER_REJECTED),
    (21659, 400, Outcome.SENDER_REJECTED),
    (21660, 400, Outcome.SENDER_REJECTED),
    (30032, 400, Outcome.SENDER_REJECTED),
    (30034, 400, Outcome.SENDER_REJECTED),
    (30042, 400, Outcome.SENDER_REJECTED),
    (21211, 400, Outcome.REFUSED),
    (21265, 400, Outcome.REFUSED),
    (21602, 400, Outcome.REFUSED),
    (21604, 400, Outcome.REFUSED),
    (21610, 400, Outcome.REFUSED),
    (21614, 400, Outcome.REFUSED),
    (21617, 400, Outcome.REFUSED),
    (21635, 400, Outcome.REFUSED),
    (21658, 400, Outcome.REFUSED),
    (20429, 429, Outcome.TRANSIENT),
    (20500, 500, Outcome.UNKNOWN),
    (20503, 503, Outcome.TRANSIENT),
    (21611, 400, Outcome.TRANSIENT),
    (30001, 400, Outcome.TRANSIENT),
    (63017, 429, Outcome.TRANSIENT),
]


def test_the_error_table_covers_every_code_the_handler_maps() -> None:
    assert {code for code, _, _ in ERROR_TABLE} == set(SEND_ERRORS)


@pytest.mark.parametrize(("code", "http_status", "outcome"), ERROR_TABLE)
def test_every_twilio_error_code_is_classified_keeping_code_and_message(
    code: int, http_status: int, outcome: Outcome
) -> None:
    body = twilio_error(code, f"the message of {code}", http_status)
    [result] = handler.parse_send_response(
        ACCOUNT, batch("+46700000001"), wire.answer(http_status, body)
    )
    assert result.outcome is outcome
    assert result.request_ids == ()
    assert (result.error_code, result.error_text) == (str(code), f"the message of {code}")


@pytest.mark.parametrize(("code", "http_status", "outcome"), ERROR_TABLE)
def test_a_code_without_a_message_gets_the_tables_description(
    code: int, http_status: int, outcome: Outcome
) -> None:
    body = {"code": str(code), "status": http_status}
    [result] = handler.parse_send_response(
        ACCOUNT, batch("+46700000001"), wire.answer(http_status, body)
    )
    assert (result.outcome, result.error_code) == (outcome, str(code))
    assert result.error_text == SEND_ERRORS[code].text


@pytest.mark.parametrize(
    "case",
    [
        wire.refused(
            401,
            {
                "code": 20003,
                "detail": "Your AccountSid or AuthToken was incorrect.",
                "message": "Authentication Error - invalid username",
                "more_info": "https://www.twilio.com/docs/errors/20003",
                "status": 401,
            },
            Outcome.ACCOUNT_ERROR,
            "20003",
            "Authentication Error - invalid username",
            id="401-current-auth-error",
        ),
        twilio_refused(
            401, 20003, "Authenticate", Outcome.ACCOUNT_ERROR, id="401-legacy-authenticate"
        ),
        wire.refused(403, b"", Outcome.ACCOUNT_ERROR, "403", "empty answer", id="403-empty"),
        wire.throttled(
            429,
            twilio_error(20429, "Too Many Requests", 429),
            "20429",
            "Too Many Requests",
            seconds="7",
            id="429-retry-after-seconds",
        ),
        wire.past_date(
            429, b"", "429", "empty answer", header="retry-after", id="429-retry-after-past-date"
        ),
        wire.throttled(
            400,
            twilio_error(21611, "queue full", 400),
            "21611",
            "queue full",
            seconds="30",
            id="transient-code-keeps-retry-after",
        ),
        wire.refused(500, "Internal error", Outcome.UNKNOWN, "500", "Internal", id="500"),
        wire.BAD_GATEWAY_PAGE,
        wire.NOT_FOUND_PAGE,
        twilio_refused(400, 99999, "something new", Outcome.REFUSED, id="unknown-code-4xx"),
        twilio_refused(503, 99998, "something new", Outcome.TRANSIENT, id="unknown-code-5xx"),
        twilio_refused(403, 99997, "forbidden thing", Outcome.ACCOUNT_ERROR, id="unknown-code-403"),
        wire.refused_with_status(201, b"", "empty answer", id="201-empty"),
        wire.OK_WITH_A_PAGE,
        wire.refused_with_status(
            201, {**CREATED, "sid": ""}, "no message sid", id="201-without-sid"
        ),
        wire.refused_with_status(201, [1, 2], "unexpected answer", id="201-json-list"),
    ],
)
def test_every_error_answer_is_classified_without_raising(case: wire.Refusal) -> None:
    case.judge(handler, ACCOUNT, batch("+46700000001"))


def test_messages_beyond_the_first_are_never_sent_and_say_so() -> None:
    sent = batch("+46700000001", "+46700000002")
    request = handler.send_request(ACCOUNT, sent)
    assert dict(request.form or ())["To"] == "+46700000001"
    first, second = handler.parse_send_response(ACCOUNT, sent, wire.answer(201, CREATED))
    assert first.outcome is Outcome.ACCEPTED
    assert (second.outcome, second.error_code) == (Outcome.REFUSED, "not_sent")


# Any answer to a send, with the batch and account it answers; the contract test
# parses it and asks `judge_any_answer` whether each result is one this provider may give.
ANY_SEND_ANSWER = wire.any_send_answer(
    wire.numbered_batches(batch, "+4670000000", 3),
    wire.bytes_or_json(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
        ["sid", "status", "code", "message", "error_code"],
        fields=4,
        leaves=10,
    ),
    accounts=st.just(ACCOUNT),
    headers=st.dictionaries(st.sampled_from(["Retry-After", "retry-after"]), st.text(max_size=8)),
)

judge_any_answer = partial(wire.assert_accepted_only_on_2xx, says_why=True)


# -- signatures --------------------------------------------------------------------

# twilio-python tests/unit/test_request_validator.py: token, URL, parameters, signatures.
SDK_TOKEN = "12345"
SDK_URI = "https://mycompany.com/myapp.php?foo=1&bar=2"
SDK_PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Digits": "1234",
    "From": "+14158675309",
    "To": "+18005551212",
    "Caller": "+14158675309",
}
SDK_BODY = b'{"property": "value", "boolean": true}'
SDK_BODY_HASH = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620"
SDK_ACCOUNT = replace(ACCOUNT, credentials={"account_sid": SID, "auth_token": SDK_TOKEN})


def sdk_callback(url: str, sig: str, params: Mapping[str, str] = SDK_PARAMS) -> CallbackRequest:
    return form_callback(params, url=url, headers={"X-Twilio-Signature": sig})


def test_the_signature_matches_twilios_published_vector() -> None:
    assert signature(SDK_TOKEN, SDK_URI, list(SDK_PARAMS.items())) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    assert twilio_signature(SDK_TOKEN, SDK_URI, SDK_PARAMS) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="


def test_repeated_parameters_are_signed_sorted_by_value() -> None:
    params = [("Sid", "CA123"), ("SidAccount", "AC123"), ("Digits", "5678"), ("Digits", "1234")]
    assert signature(SDK_TOKEN, SDK_URI, params) == "IK+Dwps556ElfBT0I3Rgjkr1wJU="
    callback = form_callback(
        params, url=SDK_URI, headers={"X-Twilio-Signature": "IK+Dwps556ElfBT0I3Rgjkr1wJU="}
    )
    handler.authenticate(SDK_ACCOUNT, callback)  # does not raise


@pytest.mark.parametrize(
    ("url", "sig"),
    [
        pytest.param(SDK_URI, "RSOYDt4T1cUTdK1PDd93/VVr8B8=", id="as-given"),
        pytest.param(
            SDK_URI.replace(".com", ".com:1234"),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8=",
            id="https-port-removed",
        ),
        pytest.param(
            SDK_URI.replace(".com", ".com:1234").replace("https", "http"),
            "Zmvh+3yNM1Phv2jhDCwEM3q5ebU=",
            id="http-port-kept",
        ),
        pytest.param(SDK_URI, "kvajT1Ptam85bY51eRf/AJRuM3w=", id="https-port-443-added"),
        pytest.param(
            SDK_URI.replace("https", "http"),
            "0ZXoZLH/DfblKGATFgpif+LLRf4=",
            id="http-port-80-added",
        ),
    ],
)
def test_twilios_published_vectors_verify_with_and_without_the_port(url: str, sig: str) -> None:
    handler.authenticate(SDK_ACCOUNT, sdk_callback(url, sig))  # does not raise


def test_a_json_body_is_verified_by_its_body_sha256_in_the_signed_url() -> None:
    assert hashlib.sha256(SDK_BODY).hexdigest() == SDK_BODY_HASH
    url = f"{SDK_URI}&bodySHA256={SDK_BODY_HASH}"
    callback = CallbackRequest(
        "POST",
        url,
        (("foo", "1"), ("bar", "2"), ("bodySHA256", SDK_BODY_HASH)),
        {"content-type": "application/json", "X-Twilio-Signature": "a9nBmqA0ju/hNViExpshrM61xv4="},
        SDK_BODY,
    )
    handler.authenticate(SDK_ACCOUNT, callback)  # does not raise
    with pytest.raises(Forbidden):
        handler.authenticate(
            SDK_ACCOUNT, replace(callback, body=SDK_BODY.replace(b"true", b"false"))
        )


def test_a_get_callback_is_signed_over_its_url_alone() -> None:
    callback = get_callback({"MessageSid": "SM1", "Body": "hi there"})
    sig = twilio_signature(TOKEN, callback.url, {})
    handler.authenticate(ACCOUNT, replace(callback, headers={"x-twilio-signature": sig}))
    with pytest.raises(Forbidden):
        handler.authenticate(
            ACCOUNT,
            replace(
                callback,
                url=callback.url.replace("hi+there", "hi+where"),
                headers={"x-twilio-signature": sig},
            ),
        )


STATUS_FIELDS = {
    "SmsSid": "SM" + "1" * 32,
    "SmsStatus": "delivered",
    "MessageStatus": "delivered",
    "To": "+46700000001",
    "MessageSid": "SM" + "1" * 32,
    "AccountSid": SID,
    "From": SENDER,
    "ApiVersion": "2010-04-01",
}


def test_a_correctly_signed_status_callback_passes() -> None:
    handler.authenticate(ACCOUNT, signed_form(STATUS_FIELDS))  # does not raise


@pytest.mark.parametrize(
    "callback",
    [
        pytest.param(form_callback(STATUS_FIELDS), id="unsigned"),
        pytest.param(
            form_callback(STATUS_FIELDS, headers={"X-Twilio-Signature": " "}), id="blank-signature"
        ),
        pytest.param(signed_form(STATUS_FIELDS, token="someone-else"), id="wrong-token"),
        pytest.param(
            replace(
                signed_form(STATUS_FIELDS),
                body=urlencode({**STATUS_FIELDS, "MessageStatus": "undelivered"}).encode(),
            ),
            id="tampered-parameter",
        ),
        pytest.param(
            replace(
                signed_form(STATUS_FIELDS),
                body=urlencode({**STATUS_FIELDS, "ErrorCode": "30003"}).encode(),
            ),
            id="added-parameter",
        ),
        pytest.param(
            replace(
                signed_form(STATUS_FIELDS),
                body=urlencode({k: v for k, v in STATUS_FIELDS.items() if k != "To"}).encode(),
            ),
            id="dropped-parameter",
        ),
        pytest.param(
            replace(signed_form(STATUS_FIELDS), url=DLR_URL.replace("k3y", "other")),
            id="other-url",
        ),
        pytest.param(
            replace(signed_form(STATUS_FIELDS), url=DLR_URL.replace("https://", "http://")),
            id="other-scheme",
        ),
        pytest.param(replace(signed_form(STATUS_FIELDS), body=b"\xff\xfe"), id="body-not-utf8"),
    ],
)
def test_an_unsigned_forged_or_tampered_callback_is_forbidden(callback: CallbackRequest) -> None:
    with pytest.raises(Forbidden):
        handler.authenticate(ACCOUNT, callback)


def test_an_account_without_an_auth_token_cannot_verify_anything() -> None:
    account = replace(ACCOUNT, credentials={"account_sid": SID})
    with pytest.raises(Forbidden, match="auth_token"):
        handler.authenticate(account, signed_form(STATUS_FIELDS))


def test_the_signature_header_is_found_in_any_letter_case() -> None:
    sig = twilio_signature(TOKEN, DLR_URL, STATUS_FIELDS)
    for name in ("X-Twilio-Signature", "x-twilio-signature", "X-TWILIO-SIGNATURE"):
        handler.authenticate(ACCOUNT, form_callback(STATUS_FIELDS, headers={name: sig}))


def test_a_signature_over_the_url_with_its_default_port_verifies() -> None:
    url = "https://gw.example:443/callbacks/tw/dlr?key=k3y"
    sig = twilio_signature(TOKEN, url, STATUS_FIELDS)
    handler.authenticate(ACCOUNT, form_callback(STATUS_FIELDS, headers={"X-Twilio-Signature": sig}))
    ipv6 = "http://[::1]:8080/callbacks/tw/dlr?key=k3y"
    sig6 = twilio_signature(TOKEN, "http://[::1]/callbacks/tw/dlr?key=k3y", STATUS_FIELDS)
    handler.authenticate(
        ACCOUNT, form_callback(STATUS_FIELDS, url=ipv6, headers={"X-Twilio-Signature": sig6})
    )


# -- status callbacks --------------------------------------------------------------

STATUS_TABLE = wire.by_meaning(
    {
        Status.SUBMITTED: ("accepted", "scheduled", "queued", "sending"),
        Status.ENROUTE: ("sent",),
        Status.DELIVERED: ("delivered", "read"),
        Status.UNDELIVERED: ("undelivered", "partially_delivered"),
        Status.FAILED: ("failed", "canceled"),
    }
)


def dlr(status: str = "delivered", **extra: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {**STATUS_FIELDS, "SmsStatus": status, "MessageStatus": status}
    return wire.changed(fields, extra)


def legacy_form(status: str) -> CallbackRequest:
    """Only the Sms* twins, as older callbacks carry them."""
    return form_callback({k: v for k, v in dlr(status).items() if not k.startswith("Message")})


def plain_form(status: str) -> CallbackRequest:
    return form_callback(dlr(status))


def json_form(status: str) -> CallbackRequest:
    return json_callback(dlr(status))


def get_form(status: str) -> CallbackRequest:
    return get_callback(dlr(status))


CALLBACK_FORMS: dict[str, Callable[[str], CallbackRequest]] = {
    "form": plain_form,
    "legacy-sms-fields": legacy_form,
    "json": json_form,
    "get": get_form,
}


@pytest.mark.parametrize("form", CALLBACK_FORMS)
@pytest.mark.parametrize(("word", "status"), STATUS_TABLE)
def test_every_message_status_maps_in_every_callback_form(
    form: str, word: str, status: Status
) -> None:
    [report] = handler.parse_dlr(ACCOUNT, CALLBACK_FORMS[form](word))
    assert report.request_id == "SM" + "1" * 32
    assert report.recipient == "+46700000001"
    assert report.status is status
    assert (report.error_code, report.error_text) == ("", word)


@pytest.mark.parametrize(
    ("word", "code", "status", "text"),
    [
        ("undelivered", 30003, Status.UNDELIVERED, "Unreachable destination handset"),
        ("undelivered", 30005, Status.UNDELIVERED, "Unknown destination handset"),
        ("undelivered", 30006, Status.UNDELIVERED, "Landline or unreachable carrier"),
        ("undelivered", 30008, Status.UNDELIVERED, "Unknown error"),
        ("undelivered", 30009, Status.UNDELIVERED, "Missing segment"),
        ("undelivered", 30004, Status.REJECTED, "Message blocked"),
        ("undelivered", 30007, Status.REJECTED, "Message filtered by the carrier"),
        ("undelivered", 30032, Status.REJECTED, "Toll-free number has not been verified"),
        ("undelivered", 30034, Status.REJECTED, "unregistered number"),
        ("undelivered", 30042, Status.REJECTED, "Sender ID blocked"),
        ("undelivered", 30036, Status.EXPIRED, "Validity period expired"),
        ("failed", 30036, Status.EXPIRED, "Validity period expired"),
        ("failed", 30001, Status.FAILED, "Queue overflow"),
        ("failed", 30002, Status.FAILED, "Account suspended"),
        ("failed", 30007, Status.FAILED, "Message filtered by the carrier"),
        ("failed", 30010, Status.FAILED, "Message price exceeds max price"),
        ("undelivered", 63016, Status.UNDELIVERED, ""),
        ("delivered", 0, Status.DELIVERED, ""),
    ],
)
def test_error_codes_are_kept_and_refine_final_failures(
    word: str, code: int, status: Status, text: str
) -> None:
    [report] = handler.parse_dlr(ACCOUNT, form_callback(dlr(word, ErrorCode=code)))
    assert (report.status, report.error_code) == (status, str(code))
    assert report.error_text.startswith(word)
    assert text in report.error_text


def test_an_error_message_in_the_callback_wins_over_the_table_and_json_numbers_read() -> None:
    fields = dlr("undelivered", ErrorCode=30003, ErrorMessage="Handset switched off")
    [report] = handler.parse_dlr(ACCOUNT, json_callback(fields))
    assert (report.error_code, report.error_text) == ("30003", "undelivered: Handset switched off")


def test_message_status_decides_when_the_twins_disagree_and_extra_fields_are_ignored() -> None:
    fields = dlr("delivered", SmsStatus="sent", RawDlrDoneDate="2611220810", ChannelPrefix="sms")
    [report] = handler.parse_dlr(ACCOUNT, form_callback(fields))
    assert report.status is Status.DELIVERED


def test_status_words_are_read_in_any_case_and_padding() -> None:
    [report] = handler.parse_dlr(ACCOUNT, form_callback(dlr(" Delivered ")))
    assert report.status is Status.DELIVERED


@pytest.mark.parametrize("word", ["received", "receiving"])
def test_an_inbound_status_at_the_dlr_url_is_invalid_and_says_why(word: str) -> None:
    wire.assert_dlr_invalid(handler, ACCOUNT, form_callback(dlr(word)), match="inbound")


INVALID_DLRS = [
    pytest.param(form_callback(dlr(MessageSid=None, SmsSid=None)), id="no-sid"),
    pytest.param(form_callback(dlr(MessageSid=" ", SmsSid="")), id="blank-sid"),
    *wire.unusable_ids(lambda **f: json_callback(dlr(SmsSid=None, **f)), "MessageSid"),
    pytest.param(form_callback(dlr(MessageStatus=None, SmsStatus=None)), id="no-status"),
    pytest.param(form_callback(dlr("gone")), id="unknown-status"),
    pytest.param(form_callback(dlr("DELIVRD")), id="smpp-vocabulary"),
    pytest.param(form_callback(dlr("undelivered", ErrorCode="x30003")), id="code-not-number"),
    pytest.param(json_callback(dlr(MessageStatus=["delivered"])), id="status-list"),
    pytest.param(json_callback(dlr(ErrorCode=[30003])), id="code-list"),
    *wire.malformed(dlr(), b'{"MessageSid": "SM1", ', json_callback, get_callback),
]


# -- inbound SMS -------------------------------------------------------------------

INBOUND = {
    "ToCountry": "US",
    "ToState": "CA",
    "SmsMessageSid": "SM" + "2" * 32,
    "NumMedia": "0",
    "ToCity": "",
    "FromZip": "",
    "SmsSid": "SM" + "2" * 32,
    "FromState": "",
    "SmsStatus": "received",
    "FromCity": "",
    "Body": "Hello there",
    "FromCountry": "SE",
    "To": SENDER,
    "ToZip": "",
    "NumSegments": "1",
    "MessageSid": "SM" + "2" * 32,
    "AccountSid": SID,
    "From": "+46700000001",
    "ApiVersion": "2010-04-01",
}


@pytest.mark.parametrize("make", [form_callback, json_callback, get_callback])
def test_an_inbound_sms_is_read_from_a_form_post_json_or_get(make: Any) -> None:
    [sms] = handler.parse_inbound(ACCOUNT, make(INBOUND))
    assert sms == InboundSms("+46700000001", SENDER, "Hello there", "SM" + "2" * 32)


def test_inbound_text_is_kept_exactly_and_may_be_empty_for_media() -> None:
    [spaced] = handler.parse_inbound(ACCOUNT, form_callback({**INBOUND, "Body": " STOP \n"}))
    assert spaced.text == " STOP \n"
    media = {**INBOUND, "Body": "", "NumMedia": "1", "MediaUrl0": "https://api.twilio.com/m"}
    [empty] = handler.parse_inbound(ACCOUNT, form_callback(media))
    assert empty.text == ""


def test_an_inbound_sms_with_only_the_legacy_sid_is_read() -> None:
    fields = {k: v for k, v in INBOUND.items() if k not in ("MessageSid", "SmsSid")}
    [sms] = handler.parse_inbound(ACCOUNT, form_callback(fields))
    assert sms.provider_id == "SM" + "2" * 32


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({k: v for k, v in INBOUND.items() if k != "From"}, id="no-from"),
        pytest.param({k: v for k, v in INBOUND.items() if k != "Body"}, id="no-body"),
        pytest.param(
            {k: v for k, v in INBOUND.items() if not k.endswith("Sid") or k == "AccountSid"},
            id="no-sid",
        ),
        pytest.param(dlr("delivered"), id="a-status-callback"),
        pytest.param({**INBOUND, "SmsStatus": "sent"}, id="outbound-status"),
    ],
)
def test_an_inbound_callback_twilio_would_never_send_is_invalid(fields: dict[str, Any]) -> None:
    wire.assert_inbound_invalid(handler, ACCOUNT, form_callback(fields))


def test_an_inbound_json_body_that_is_not_text_is_invalid() -> None:
    wire.assert_inbound_invalid(handler, ACCOUNT, json_callback({**INBOUND, "Body": ["hi"]}))


def test_the_inbound_answer_is_empty_twiml_without_a_reply() -> None:
    reply = handler.inbound_answer(ACCOUNT, None)
    assert reply is not None
    assert reply.status_code == 200
    assert reply.headers["Content-Type"] == "text/xml"
    assert reply.body == b'<?xml version="1.0" encoding="UTF-8"?><Response/>'


def test_an_auto_reply_becomes_one_escaped_twiml_message() -> None:
    reply = handler.inbound_answer(ACCOUNT, 'Tom & Jerry <3 "you"\x00\x07 ✓')
    assert reply is not None
    assert reply.body.decode() == (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<Response><Message>Tom &amp; Jerry &lt;3 "you" ✓</Message></Response>'
    )


# -- polling and balance -----------------------------------------------------------


def test_a_poll_fetches_the_first_ids_message_resource_with_basic_auth() -> None:
    request = handler.poll_request(ACCOUNT, "http://h:81", ["SMaa", "SMbb"])
    assert request is not None
    assert (request.method, request.url) == (
        "GET",
        f"http://h:81/2010-04-01/Accounts/{SID}/Messages/SMaa.json",
    )
    assert request.headers["Authorization"].startswith("Basic ")
    assert request.json is None and request.form is None and not request.params


# An ID to poll and where the poll goes without the account's base URL.
POLL_HOSTS = [("SMaa", f"https://api.twilio.com/2010-04-01/Accounts/{SID}/Messages/SMaa.json")]


@pytest.mark.parametrize(("word", "status"), STATUS_TABLE)
def test_a_polled_resource_reports_its_status(word: str, status: Status) -> None:
    body = {**CREATED, "status": word}
    [report] = handler.parse_poll_response(ACCOUNT, [CREATED["sid"]], wire.answer(200, body))
    assert (report.request_id, report.status, report.recipient) == (
        CREATED["sid"],
        status,
        "+14155552345",
    )


def test_a_polled_failure_keeps_twilios_error_code_and_message() -> None:
    body = {**CREATED, "status": "undelivered", "error_code": 30007, "error_message": "Filtered"}
    [report] = handler.parse_poll_response(ACCOUNT, [CREATED["sid"]], wire.answer(200, body))
    assert (report.status, report.error_code, report.error_text) == (
        Status.REJECTED,
        "30007",
        "undelivered: Filtered",
    )


def test_a_polled_resource_without_a_sid_is_the_one_asked_for() -> None:
    body = {k: v for k, v in CREATED.items() if k != "sid"}
    [report] = handler.parse_poll_response(ACCOUNT, ["SMasked"], wire.answer(200, body))
    assert report.request_id == "SMasked"


@pytest.mark.parametrize(
    "response",
    [
        pytest.param(wire.answer(404, twilio_error(20404, "not found", 404)), id="404"),
        pytest.param(wire.answer(401, twilio_error(20003, "Authenticate", 401)), id="401"),
        pytest.param(wire.answer(200, wire.HTML_PAGE), id="html"),
        pytest.param(wire.answer(200, {**CREATED, "status": "received"}), id="inbound-message"),
        pytest.param(wire.answer(200, {**CREATED, "status": "weird"}), id="unknown-status"),
        pytest.param(wire.answer(200, [CREATED]), id="list"),
    ],
)
def test_unreadable_poll_answers_give_no_reports(response: WireResponse) -> None:
    assert handler.parse_poll_response(ACCOUNT, [CREATED["sid"]], response) == []


def test_the_balance_is_fetched_and_read_from_the_sdk_fixture() -> None:
    request = handler.balance_request(ACCOUNT, BASE)
    assert request is not None
    assert (request.method, request.url) == (
        "GET",
        f"{BASE}/2010-04-01/Accounts/{SID}/Balance.json",
    )
    body = {
        "account_sid": "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "balance": "0.05",
        "currency": "USD",
    }
    balance = handler.parse_balance(ACCOUNT, wire.answer(200, body))
    assert (balance.amount, balance.currency) == (0.05, "USD")


BALANCE_ERRORS = [
    (wire.answer(401, twilio_error(20003, "Authenticate", 401)), "20003: Authenticate"),
    (wire.answer(502, wire.HTML_PAGE), "Bad Gateway"),
    (wire.answer(200, {"balance": "lots", "currency": "USD"}), "numeric"),
    (wire.answer(200, {"balance": "NaN", "currency": "USD"}), "numeric"),
    (wire.answer(200, {"balance": True}), "numeric"),
    (wire.answer(200, {"currency": "USD"}), "numeric"),
    (wire.answer(200, "[1]"), "not a JSON object"),
]


# -- the fake over real HTTP -------------------------------------------------------


class Rig(rigging.Wiring[FakeTwilio]):
    def batch(self, *numbers: str, sender: str = SENDER) -> SendBatch:
        return batch(
            *numbers,
            sender=sender,
            base_url=self.base_url,
            dlr_url=f"{self.receiver_url}/dlr?key=k",
        )

    async def send(self, sent: SendBatch, account: Account = ACCOUNT) -> WireResponse:
        return await self.execute(handler.send_request(account, sent))


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    async with rigging.wired(
        Rig, FakeTwilio(SID, TOKEN), callbacks=("inbound",), query="?key=k"
    ) as rig:
        yield rig


async def test_a_message_is_created_by_the_fake_with_an_sm_sid(rig: Rig) -> None:
    sent = rig.batch("+46700000001")
    [result] = handler.parse_send_response(ACCOUNT, sent, await rig.send(sent))
    assert (result.outcome, result.status) == (Outcome.ACCEPTED, Status.SUBMITTED)
    [sid] = result.request_ids
    assert sid.startswith("SM") and len(sid) == 34
    assert rig.fake.messages[sid]["status"] in ("queued", "sent", "delivered")
    assert rig.fake.sent == [
        {
            "To": "+46700000001",
            "From": SENDER,
            "Body": "Hello",
            "StatusCallback": f"{rig.receiver_url}/dlr?key=k&smsgw_message=m0",
        }
    ]


async def test_the_fake_checks_basic_auth_and_the_account_in_the_path(rig: Rig) -> None:
    sent = rig.batch("+46700000001")
    wrong_token = replace(ACCOUNT, credentials={"account_sid": SID, "auth_token": "nope"})
    other_sid = replace(ACCOUNT, credentials={"account_sid": "AC" + "c" * 32, "auth_token": TOKEN})
    for account in (wrong_token, other_sid):
        [result] = handler.parse_send_response(account, sent, await rig.send(sent, account))
        assert (result.outcome, result.error_code) == (Outcome.ACCOUNT_ERROR, "20003")
    assert rig.fake.sent == [] and rig.fake.requests_seen == 2


@pytest.mark.parametrize(
    ("sender", "to", "outcome", "code"),
    [
        ("+15005550001", "+46700000001", Outcome.SENDER_REJECTED, "21212"),
        ("+15005550007", "+46700000001", Outcome.SENDER_REJECTED, "21606"),
        ("+15005550008", "+46700000001", Outcome.TRANSIENT, "21611"),
        (SENDER, "+15005550001", Outcome.REFUSED, "21211"),
        (SENDER, "+15005550002", Outcome.SENDER_REJECTED, "21612"),
        (SENDER, "+15005550003", Outcome.ACCOUNT_ERROR, "21408"),
        (SENDER, "+15005550004", Outcome.REFUSED, "21610"),
        (SENDER, "+15005550009", Outcome.REFUSED, "21614"),
        ("", "+46700000001", Outcome.SENDER_REJECTED, "21603"),
        (SENDER, "4670", Outcome.REFUSED, "21211"),
    ],
)
async def test_twilios_magic_numbers_get_their_documented_errors(
    rig: Rig, sender: str, to: str, outcome: Outcome, code: str
) -> None:
    sent = rig.batch(to, sender=sender)
    [result] = handler.parse_send_response(ACCOUNT, sent, await rig.send(sent))
    assert (result.outcome, result.error_code) == (outcome, code)
    assert result.error_text and rig.fake.sent == []


async def test_any_error_code_can_be_planned_per_number(rig: Rig) -> None:
    rig.fake.error_for["+46700000001"] = 21610
    rig.fake.error_for["+46700000002"] = 20005
    for number, expected in (
        ("+46700000001", (Outcome.REFUSED, "21610")),
        ("+46700000002", (Outcome.ACCOUNT_ERROR, "20005")),
    ):
        sent = rig.batch(number)
        [result] = handler.parse_send_response(ACCOUNT, sent, await rig.send(sent))
        assert (result.outcome, result.error_code) == expected


async def test_an_overlong_body_is_refused_by_the_fake(rig: Rig) -> None:
    sent = batch("+46700000001", text="x" * 1601, base_url=rig.base_url)
    [result] = handler.parse_send_response(ACCOUNT, sent, await rig.send(sent))
    assert (result.outcome, result.error_code) == (Outcome.REFUSED, "21617")


async def test_429_and_503_are_retried_a_500_is_unknown_then_a_send_goes_through(rig: Rig) -> None:
    rig.fake.fail_next = [503, 429, 500]
    sent = rig.batch("+46700000001")
    outcomes = []
    for _ in range(4):
        [result] = handler.parse_send_response(ACCOUNT, sent, await rig.send(sent))
        outcomes.append((result.outcome, result.error_code, result.retry_after))
    assert outcomes[:3] == [
        (Outcome.TRANSIENT, "20503", None),
        (Outcome.TRANSIENT, "20429", 1.0),
        (Outcome.UNKNOWN, "20500", None),
    ]
    assert outcomes[3][0] is Outcome.ACCEPTED
    assert rig.fake.requests_seen == 4 and len(rig.fake.sent) == 1


async def test_status_callbacks_arrive_signed_for_the_url_given_and_parse(rig: Rig) -> None:
    sent = rig.batch("+46700000001")
    [result] = handler.parse_send_response(ACCOUNT, sent, await rig.send(sent))
    await rig.fake.drain()
    reports = []
    for call in rig.receiver.calls:
        assert call.url == f"{sent.dlr_url}&smsgw_message=m0"
        assert call.headers["content-type"] == "application/x-www-form-urlencoded"
        handler.authenticate(ACCOUNT, call)  # signed as Twilio signs: does not raise
        reports.extend(handler.parse_dlr(ACCOUNT, call))
    assert [(r.request_id, r.status) for r in reports] == [
        (result.request_ids[0], Status.ENROUTE),
        (result.request_ids[0], Status.DELIVERED),
    ]
    assert rig.fake.dlr_acks == [200, 200]
    assert rig.fake.messages[result.request_ids[0]]["status"] == "delivered"


async def test_failed_deliveries_carry_their_error_code(rig: Rig) -> None:
    rig.fake.status_plan = [("sent", None), ("undelivered", 30003)]
    sent = rig.batch("+46700000001")
    handler.parse_send_response(ACCOUNT, sent, await rig.send(sent))
    await rig.fake.drain()
    last = handler.parse_dlr(ACCOUNT, rig.receiver.calls[-1])[0]
    assert (last.status, last.error_code) == (Status.UNDELIVERED, "30003")
    params = dict(parse_qsl(rig.receiver.calls[-1].body.decode()))
    assert params["ErrorCode"] == "30003" and params["SmsStatus"] == "undelivered"


@pytest.mark.parametrize(("knob", "value"), forgeries("delivered"))
async def test_unsigned_forged_or_tampered_pushes_fail_verification(
    rig: Rig, knob: str, value: Any
) -> None:
    setattr(rig.fake, knob, value)
    rig.fake.status_plan = [("undelivered", 30003)]
    sent = rig.batch("+46700000001")
    handler.parse_send_response(ACCOUNT, sent, await rig.send(sent))
    await rig.fake.drain()
    [call] = rig.receiver.calls
    with pytest.raises(Forbidden):
        handler.authenticate(ACCOUNT, call)


async def test_a_messaging_service_send_is_accepted_and_reported(rig: Rig) -> None:
    account = replace(ACCOUNT, options={"messaging_service_sid": "MG" + "d" * 32})
    sent = rig.batch("+46700000001")
    response = await rig.send(sent, account)
    assert response.json()["status"] == "accepted" and response.json()["from"] is None
    [result] = handler.parse_send_response(account, sent, response)
    await rig.fake.drain()
    assert result.outcome is Outcome.ACCEPTED
    params = dict(parse_qsl(rig.receiver.calls[0].body.decode()))
    assert params["MessagingServiceSid"] == "MG" + "d" * 32


async def test_polls_follow_the_status_and_unknown_sids_give_nothing(rig: Rig) -> None:
    rig.fake.push_reports = False
    rig.fake.status_plan = [("sent", None), ("undelivered", 30005)]
    sent = rig.batch("+46700000001")
    [result] = handler.parse_send_response(ACCOUNT, sent, await rig.send(sent))
    await rig.fake.drain()
    assert rig.receiver.calls == []
    sid = result.request_ids[0]
    poll = handler.poll_request(ACCOUNT, rig.base_url, [sid])
    assert poll is not None
    [report] = handler.parse_poll_response(ACCOUNT, [sid], await rig.execute(poll))
    assert (report.request_id, report.status, report.error_code) == (
        sid,
        Status.UNDELIVERED,
        "30005",
    )
    unknown = handler.poll_request(ACCOUNT, rig.base_url, ["SM" + "0" * 32])
    assert unknown is not None
    missing = await rig.execute(unknown)
    assert missing.status_code == 404 and missing.json()["code"] == 20404
    assert handler.parse_poll_response(ACCOUNT, ["SM" + "0" * 32], missing) == []


async def test_the_balance_comes_from_the_fake(rig: Rig) -> None:
    rig.fake.balance, rig.fake.currency = "3.25", "EUR"
    balance = await rig.read_balance(handler, ACCOUNT)
    assert (balance.amount, balance.currency) == (3.25, "EUR")
    wrong = replace(ACCOUNT, credentials={"account_sid": SID, "auth_token": "nope"})
    with pytest.raises(ValueError, match="20003"):
        await rig.read_balance(handler, wrong)


@pytest.mark.parametrize("method", ["POST", "GET"])
async def test_a_pushed_inbound_sms_is_signed_and_parses(rig: Rig, method: str) -> None:
    rig.fake.inbound_method = method
    assert await rig.fake.push_inbound("+46700000001", SENDER, "Hi & bye", num_media=1) == 200
    [call] = rig.receiver.calls
    handler.authenticate(ACCOUNT, call)  # does not raise
    [sms] = handler.parse_inbound(ACCOUNT, call)
    assert (sms.sender, sms.recipient, sms.text) == ("+46700000001", SENDER, "Hi & bye")
    assert sms.provider_id.startswith("SM")


# -- end to end through a running smsgw --------------------------------------------


@asynccontextmanager
async def twilio_setup(
    tmp_path: Path,
    *,
    sender: str = SENDER,
    fallback_sender: str = "",
    options: dict[str, Any] | None = None,
    **settings: Any,
) -> AsyncIterator[tuple[Gateway, FakeTwilio, dict[str, Any]]]:
    fake = FakeTwilio(SID, TOKEN)
    account = rigging.account_fields(
        "tw",
        "twilio",
        {"account_sid": SID, "auth_token": TOKEN},
        sender,
        fallback_sender=fallback_sender,
        options=options or {},
    )
    async with rigging.provider_gateway(tmp_path, fake, account, **settings) as (gateway, created):
        yield gateway, fake, created


async def count_rows(gateway: Gateway, table: str) -> int:
    return await db_count(gateway.settings, f"SELECT COUNT(*) FROM {table}")  # noqa: S608


async def test_a_send_is_delivered_by_twilios_signed_status_callbacks(tmp_path: Path) -> None:
    async with twilio_setup(tmp_path) as (gateway, fake, account):
        [message] = await gateway.send(to="+46700000001", text="hello", account="tw")
        statuses = await rigging.settle(gateway, fake, [message["id"]])
        assert statuses[message["id"]] == "delivered"
        [sent] = fake.sent
        dlr_url = account["callback_urls"]["dlr"]
        assert sent["StatusCallback"] == f"{dlr_url}&smsgw_message={message['id']}"
        assert (sent["To"], sent["From"], sent["Body"]) == ("+46700000001", SENDER, "hello")
        assert fake.dlr_acks == [200, 200]
        assert all("X-Twilio-Signature" in headers for *_, headers in fake.callbacks)
        detail = await gateway.message(message["id"])
        assert detail["request_id"] in fake.messages and detail["http_status"] == 201
        assert await rigging.account_counters(gateway, "tw") == rigging.tally(
            requests=1, accepted=1, delivered=1
        )


async def test_undelivered_rejected_and_expired_outcomes_keep_twilios_codes(tmp_path: Path) -> None:
    plans: dict[str, Plan] = {
        "1": [("sent", None), ("undelivered", 30003)],
        "2": [("sent", None), ("undelivered", 30007)],
        "3": [("failed", 30036)],
        "4": [("sent", None), ("delivered", None)],
    }
    async with twilio_setup(tmp_path) as (gateway, fake, _):
        fake.status_plan_for = lambda to: plans[to[-1]]
        sent = await gateway.send(
            to=[f"+4670000000{n}" for n in "1234"], text="mixed", account="tw"
        )
        statuses = await rigging.settle(gateway, fake, [m["id"] for m in sent])
        by_end = {m["to"][-1]: statuses[m["id"]] for m in sent}
        assert by_end == {"1": "undelivered", "2": "rejected", "3": "expired", "4": "delivered"}
        undelivered = await gateway.message(next(m["id"] for m in sent if m["to"][-1] == "1"))
        assert undelivered["error"] == {
            "code": "30003",
            "message": "undelivered: Unreachable destination handset",
        }
        assert await rigging.account_counters(gateway, "tw") == rigging.tally(
            requests=4, accepted=4, delivered=1, undelivered=3
        )


async def test_a_refused_number_fails_with_twilios_code_and_is_never_retried(
    tmp_path: Path,
) -> None:
    async with twilio_setup(tmp_path) as (gateway, fake, _):
        status, detail = await rigging.send_one(gateway, fake, "tw", "+15005550001", "nobody")
        assert status == "failed"
        assert detail["http_status"] == 400 and detail["error"]["code"] == "21211"
        assert fake.requests_seen == 1 and fake.sent == []
        assert (await rigging.account_counters(gateway, "tw"))["failed"] == 1


async def test_a_wrong_auth_token_is_an_account_error_never_stored_anywhere_shown(
    tmp_path: Path,
) -> None:
    async with twilio_setup(tmp_path) as (gateway, fake, _):
        fake.auth_token = "rotated-token"
        status, detail = await rigging.send_one(gateway, fake, "tw", "+46700000001", "denied")
        assert status == "failed"
        assert detail["http_status"] == 401 and detail["error"]["code"] == "20003"
        assert (await rigging.account_counters(gateway, "tw"))["failed"] == 1
        listed = (await gateway.api.get("/v1/accounts/tw")).json()
        assert TOKEN not in json.dumps(listed) and listed["credentials"]["account_sid"] == SID


async def test_the_stored_provider_response_never_holds_the_auth_token(tmp_path: Path) -> None:
    async with twilio_setup(tmp_path) as (gateway, fake, _):
        fake.error_for["+46700000001"] = 21211
        [refused] = await gateway.send(to="+46700000001", text="echo", account="tw")
        [ok] = await gateway.send(to="+46700000002", text="fine", account="tw")
        await rigging.settle(gateway, fake, [refused["id"], ok["id"]])
        for message in (refused, ok):
            detail = await gateway.message(message["id"])
            assert detail["http_response"] and TOKEN not in json.dumps(detail)


async def test_a_sender_twilio_rejects_is_retried_with_the_fallback_sender(tmp_path: Path) -> None:
    async with twilio_setup(tmp_path, sender="+15005550001", fallback_sender=SENDER) as (
        gateway,
        fake,
        _,
    ):
        [message] = await gateway.send(to="+46700000001", text="fallback", account="tw")
        statuses = await rigging.settle(gateway, fake, [message["id"]])
        assert statuses[message["id"]] == "delivered"
        assert fake.requests_seen == 2 and [s["From"] for s in fake.sent] == [SENDER]


GENUINE: dict[str, Any] = {"sign": True, "signing_token": None, "tamper": {}}


@pytest.mark.parametrize(("knob", "value"), forgeries("undelivered"))
async def test_an_unsigned_forged_or_tampered_callback_is_refused_and_stores_nothing(
    tmp_path: Path, knob: str, value: Any
) -> None:
    async with twilio_setup(tmp_path) as (gateway, fake, _):
        setattr(fake, knob, value)
        fake.status_plan = [("delivered", None)]
        [message] = await gateway.send(to="+46700000001", text="guarded", account="tw")

        async def answered() -> bool:
            await fake.drain()
            return bool(fake.dlr_acks)

        await eventually(answered)
        assert fake.dlr_acks == [403]

        async def recorded() -> dict[str, Any]:
            # The refused callback may be answered before the send's answer is stored.
            found = await gateway.message(message["id"])
            return found if found["status"] != "sending" else {}

        detail = await eventually(recorded)
        assert detail["status"] == "submitted"
        assert await count_rows(gateway, "reports") == 0
        assert (await rigging.account_counters(gateway, "tw"))["pending"] == 1
        # The genuine article still gets through.
        setattr(fake, knob, GENUINE[knob])
        assert await fake.push_status(detail["request_id"], "delivered") == 200
        await gateway.applied()
        assert (await gateway.message(message["id"]))["status"] == "delivered"


async def test_inbound_sms_is_answered_with_twiml_and_listed_only_when_signed(
    tmp_path: Path,
) -> None:
    async with twilio_setup(tmp_path) as (gateway, fake, _):
        fake.sign = False
        assert await fake.push_inbound("+46700000009", SENDER, "forged") == 403
        assert await count_rows(gateway, "inbound") == 0
        fake.sign = True
        assert await fake.push_inbound("+46700000009", SENDER, "Hi there") == 200
        status, content_type, body = fake.inbound_answers[-1]
        assert status == 200
        assert content_type.startswith("text/xml")
        assert body == b'<?xml version="1.0" encoding="UTF-8"?><Response/>'
        assert await rigging.listed_inbound(gateway) == ("+46700000009", "Hi there", "tw")


async def test_an_auto_reply_rides_in_the_twiml_answer_and_is_tracked_to_delivered(
    tmp_path: Path,
) -> None:
    async with twilio_setup(tmp_path) as (gateway, fake, _):
        made = await gateway.api.post(
            "/v1/autoreplies",
            json={"name": "hi", "pattern": "hi", "reply": "Hello & welcome, {from}"},
        )
        assert made.status_code == 201, made.text
        assert await fake.push_inbound("+46700000009", SENDER, "Hi there") == 200
        _, _, body = fake.inbound_answers[-1]
        assert b"<Message action=" in body and b"Hello &amp; welcome, +46700000009" in body
        # No second API call: Twilio sends the TwiML message itself.
        assert fake.sent == []
        [twiml] = fake.twiml_sent
        assert (twiml["To"], twiml["From"]) == ("+46700000009", SENDER)
        [inbound] = (await gateway.api.get("/v1/inbound")).json()["inbound"]
        reply_id = inbound["reply"]["id"]
        statuses = await rigging.settle(gateway, fake, [reply_id])
        assert statuses[reply_id] == "delivered"
        reply = await gateway.message(reply_id)
        assert reply["request_id"].startswith("SM") and reply["text"] == twiml["Body"]
        assert (await rigging.account_counters(gateway, "tw"))["delivered"] == 1
        assert await count_rows(gateway, "outbox") == 0


async def test_an_inbound_sms_no_rule_answers_gets_empty_twiml(tmp_path: Path) -> None:
    async with twilio_setup(tmp_path) as (gateway, fake, _):
        assert await fake.push_inbound("+46700000009", SENDER, "STOP") == 200
        _, _, body = fake.inbound_answers[-1]
        assert b"<Message" in body  # the opt-out confirmation
        listed = (await gateway.api.get("/v1/suppressions")).json()["suppressions"]
        assert [s["number"] for s in listed] == ["+46700000009"]
        assert await fake.push_inbound("+46700000009", SENDER, "anything") == 200
        _, _, body = fake.inbound_answers[-1]
        assert body == b'<?xml version="1.0" encoding="UTF-8"?><Response/>'


async def test_a_polled_account_reaches_its_final_status_without_callbacks(tmp_path: Path) -> None:
    async with twilio_setup(tmp_path, options={"poll": True}, poll_first_after=0.05) as (
        gateway,
        fake,
        _,
    ):
        fake.push_reports = False
        fake.status_plan = [("sent", None), ("delivered", None)]
        [message] = await gateway.send(to="+46700000001", text="poll me", account="tw")
        statuses = await rigging.settle(gateway, fake, [message["id"]])
        assert statuses[message["id"]] == "delivered" and fake.dlr_acks == []


async def test_the_balance_endpoint_reads_twilios_balance(tmp_path: Path) -> None:
    async with twilio_setup(tmp_path) as (gateway, fake, _):
        fake.balance, fake.currency = "42.17", "USD"
        response = await gateway.api.get("/v1/balance/tw")
        assert response.status_code == 200
        assert response.json() == {"account": "tw", "balance": 42.17, "currency": "USD"}


AMBIGUOUS = rigging.Ambiguous(
    fake=lambda: FakeTwilio(SID, TOKEN),
    account=rigging.account_fields(
        "tw", "twilio", {"account_sid": SID, "auth_token": TOKEN}, SENDER
    ),
    late_report=lambda fake, _to: fake.push_status(next(iter(fake.messages)), "delivered"),
    by="reference",
    quiet="status_plan",
)
"""A lost answer is found by the message ID in its StatusCallback URL."""
