"""Every registered handler, against any answer a provider could give, and any
callback signature: the parts of a handler no callback route reaches.

An answer to a send request it cannot read must still give one result per message; a
poll answer gives reports or none; an unreadable balance is a ValueError; a callback
either verifies or is Forbidden. (The callback readers are fuzzed over HTTP, with what
smsgw stores checked, in tests/test_handlers.py.)
"""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handlers import HANDLERS
from handlers.base import CallbackRequest, ProviderHandler, SendRefused, WireResponse
from service.errors import Forbidden
from service.model import Account, OutgoingSms, SendBatch

CREDENTIALS = {
    "token": "t0k",
    "username": "user",
    "password": "pa55",
    "api_key": "k3y",
    "account_sid": "AC" + "0" * 32,
    "auth_token": "auth",
}
FIELD_NAMES = st.sampled_from(
    [
        "requestid", "statusInt", "statusStr", "recipient", "sMessageId", "sStatus",
        "iErrCode", "sMobileNo", "results", "messageId", "status", "statusCode", "to",
        "from", "text", "message", "MessageSid", "MessageStatus", "ErrorCode", "Body",
        "From", "To", "id", "msgid", "receiver", "error", "integrationName",
    ]
)  # fmt: skip
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(FIELD_NAMES | st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=20,
)
BODIES = st.one_of(
    st.binary(max_size=300),
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(FIELD_NAMES, JSON_VALUES, max_size=8).map(lambda v: json.dumps(v).encode()),
    st.lists(st.tuples(FIELD_NAMES, st.text(max_size=20)), max_size=8).map(
        lambda pairs: "&".join(f"{k}={v}" for k, v in pairs).encode()
    ),
)
CALLBACKS = st.builds(
    CallbackRequest,
    method=st.sampled_from(["GET", "POST"]),
    url=st.just("http://127.0.0.1:8080/callbacks/a/dlr?key=k"),
    query=st.lists(st.tuples(FIELD_NAMES, st.text(max_size=20)), max_size=6),
    headers=st.sampled_from(
        [
            {},
            {"content-type": "application/json"},
            {"content-type": "application/x-www-form-urlencoded"},
            {"content-type": "text/xml"},
        ]
    ),
    body=BODIES,
)
ANSWERS = st.builds(
    WireResponse,
    status_code=st.sampled_from([200, 201, 202, 400, 401, 403, 404, 429, 500, 502, 503]),
    body=BODIES,
    headers=st.sampled_from([{}, {"content-type": "application/json"}, {"Retry-After": "x"}]),
)
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def account_for(handler: ProviderHandler) -> Account:
    return Account(
        name="a",
        provider=handler.name,
        credentials={k: CREDENTIALS[k] for k in handler.credential_fields},
        sender="smsgw",
        callback_secret="k",
    )


def batch_of(count: int) -> SendBatch:
    messages = tuple(
        OutgoingSms(f"m{n}", f"+4670000000{n}", "hello", "smsgw", "GSM-7", 1) for n in range(count)
    )
    return SendBatch(messages, base_url="http://127.0.0.1:9", dlr_url="http://127.0.0.1:9/dlr")


EVERY_HANDLER = pytest.mark.parametrize(
    "handler", [HANDLERS[name] for name in sorted(HANDLERS)], ids=sorted(HANDLERS)
)


@EVERY_HANDLER
@FUZZ
@given(callback=CALLBACKS)
def test_a_callback_either_verifies_or_is_forbidden(
    handler: ProviderHandler, callback: CallbackRequest
) -> None:
    with contextlib.suppress(Forbidden):
        handler.authenticate(account_for(handler), callback)


@EVERY_HANDLER
@FUZZ
@given(answer=ANSWERS, count=st.integers(min_value=1, max_value=3))
def test_any_answer_to_a_send_gives_one_result_per_message(
    handler: ProviderHandler, answer: WireResponse, count: int
) -> None:
    account = account_for(handler)
    batch = batch_of(min(count, handler.max_batch))
    try:
        handler.send_request(account, batch)
    except SendRefused:
        return
    assert len(handler.parse_send_response(account, batch, answer)) == len(batch.messages)


@EVERY_HANDLER
@FUZZ
@given(answer=ANSWERS)
def test_any_poll_answer_gives_reports_or_none(
    handler: ProviderHandler, answer: WireResponse
) -> None:
    reports = handler.parse_poll_response(account_for(handler), ["R1"], answer)
    assert isinstance(reports, list)


@EVERY_HANDLER
@FUZZ
@given(answer=ANSWERS)
def test_an_unreadable_balance_is_a_value_error(
    handler: ProviderHandler, answer: WireResponse
) -> None:
    with contextlib.suppress(ValueError):
        handler.parse_balance(account_for(handler), answer)
