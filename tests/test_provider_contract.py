"""What every provider's handler must do alike, judged once over each provider's cases.

The cases stay with their provider, in its documented shapes, as module tables
(`SEND_URLS`, `GET_SENDS`, `POLL_HOSTS`, `INVALID_DLRS`, `UNREADABLE_POLL_ANSWERS`,
`BALANCE_ERRORS`, `ANY_SEND_ANSWER` with its `judge_any_answer` where the provider's
answers promise more than `wire.assert_accepted_only_on_2xx`); only the check that
judges them lives here.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType
from typing import Any

import pytest
from _pytest.mark import ParameterSet
from hypothesis import given
from hypothesis import strategies as st

from handlers.base import CallbackRequest, ProviderHandler, WireResponse
from service.model import Account, SendBatch
from tests import test_clickatell as clickatell
from tests import test_connectel as connectel
from tests import test_infobip as infobip
from tests import test_intellisoftware as intellisoftware
from tests import test_routemobile as routemobile
from tests import test_sms1609 as sms1609
from tests import test_twilio as twilio
from tests import wire

PROVIDERS: dict[str, ModuleType] = {
    "clickatell": clickatell,
    "connectel": connectel,
    "infobip": infobip,
    "intellisoftware": intellisoftware,
    "routemobile": routemobile,
    "sms1609": sms1609,
    "twilio": twilio,
}


def cases(table: str) -> list[ParameterSet]:
    """Each provider's `table`, a case a row, behind that provider's handler and account;
    a row named by its provider and its own id, or by its place in the table."""
    found = []
    for name, module in PROVIDERS.items():
        rows: Sequence[Any] = getattr(module, table, ())
        for place, row in enumerate(rows):
            values, own = (row.values, row.id) if isinstance(row, ParameterSet) else (row, None)
            case_id = f"{name}-{own or place}"
            found.append(pytest.param(module.handler, module.ACCOUNT, *values, id=case_id))
    return found


@pytest.mark.parametrize(("handler", "account", "batch", "url"), cases("SEND_URLS"))
def test_the_send_path_follows_the_base_url_or_the_public_host(
    handler: ProviderHandler, account: Account, batch: SendBatch, url: str
) -> None:
    assert handler.send_request(account, batch).url == url


@pytest.mark.parametrize(("handler", "account", "batch", "url", "params"), cases("GET_SENDS"))
def test_a_get_send_carries_exactly_the_documented_parameters_in_order(
    handler: ProviderHandler,
    account: Account,
    batch: SendBatch,
    url: str,
    params: list[tuple[str, str]],
) -> None:
    wire.assert_get_request(handler.send_request(account, batch), url, params)


@pytest.mark.parametrize(("handler", "account", "request_id", "url"), cases("POLL_HOSTS"))
def test_a_poll_without_ids_is_none_and_without_a_base_url_goes_to_the_public_host(
    handler: ProviderHandler, account: Account, request_id: str, url: str
) -> None:
    assert handler.poll_request(account, "http://h:81", []) is None
    assert handler.poll_request(account, "http://h:81", [" "]) is None
    request = handler.poll_request(account, "", [request_id])
    assert request is not None and request.url == url


@pytest.mark.parametrize(("handler", "account", "callback"), cases("INVALID_DLRS"))
def test_a_delivery_report_the_provider_would_never_send_is_invalid(
    handler: ProviderHandler, account: Account, callback: CallbackRequest
) -> None:
    wire.assert_dlr_invalid(handler, account, callback)


@pytest.mark.parametrize(
    ("handler", "account", "ids", "response"), cases("UNREADABLE_POLL_ANSWERS")
)
def test_a_poll_answer_without_a_readable_status_for_a_known_id_gives_no_report(
    handler: ProviderHandler, account: Account, ids: list[str], response: WireResponse
) -> None:
    assert handler.parse_poll_response(account, ids, response) == []


@pytest.mark.parametrize(("handler", "account", "response", "says"), cases("BALANCE_ERRORS"))
def test_a_balance_answer_without_a_balance_raises_saying_why(
    handler: ProviderHandler, account: Account, response: WireResponse, says: str
) -> None:
    wire.assert_balance_invalid(handler, account, response, says)


@pytest.mark.parametrize("provider", PROVIDERS.values(), ids=PROVIDERS.keys())
@given(data=st.data())
def test_any_answer_yields_one_result_per_message_judged_by_its_provider(
    provider: ModuleType, data: st.DataObject
) -> None:
    account, sent, response = data.draw(provider.ANY_SEND_ANSWER)
    results = provider.handler.parse_send_response(account, sent, response)
    assert len(results) == len(sent.messages)
    judge = getattr(provider, "judge_any_answer", wire.assert_accepted_only_on_2xx)
    judge(results, response.status_code)
