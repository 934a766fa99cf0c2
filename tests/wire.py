"""What a handler parses, built by hand, and the checks every provider's handler shares.

The provider test files feed their handler answers and callbacks in the provider's
documented shapes with no server at all; these build the envelopes around those shapes
so that each file keeps only what is its provider's own.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple
from urllib.parse import urlencode

import pytest
from _pytest.mark import ParameterSet
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from handlers.base import CallbackRequest, ProviderHandler, WireRequest, WireResponse
from service.errors import CallbackInvalid
from service.model import Account, Outcome, OutgoingSms, RecipientResult, SendBatch, Status

Fields = Mapping[str, Any] | Sequence[tuple[str, Any]]


def _encoded(body: Any) -> bytes:
    """Bytes as they are, text as UTF-8, anything else as JSON."""
    if isinstance(body, bytes):
        return body
    return body.encode() if isinstance(body, str) else json.dumps(body).encode()


def answer(status: int, body: Any = b"", headers: Mapping[str, str] | None = None) -> WireResponse:
    """A provider's answer to a request; `body` as for `_encoded`."""
    return WireResponse(status, _encoded(body), dict(headers or {}))


def json_callback(url: str, body: Any, content_type: str = "application/json") -> CallbackRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return CallbackRequest("POST", url, (), {"content-type": content_type}, raw)


def form_callback(
    url: str, fields: Fields, headers: Mapping[str, str] | None = None
) -> CallbackRequest:
    pairs = fields.items() if isinstance(fields, Mapping) else fields
    body = urlencode([(k, str(v)) for k, v in pairs]).encode()
    sent = {"content-type": "application/x-www-form-urlencoded", **(headers or {})}
    return CallbackRequest("POST", url, (), sent, body)


def get_callback(url: str, fields: Mapping[str, Any]) -> CallbackRequest:
    """`fields` in the query; the URL shown is elided, as the handler reads the query."""
    query = tuple((k, str(v)) for k, v in fields.items())
    return CallbackRequest("GET", f"{url}?...", query, {}, b"")


def assert_get_request(request: WireRequest, url: str, params: list[tuple[str, str]]) -> None:
    """A send as a GET of `url` carrying exactly `params`, in order, and no body."""
    assert (request.method, request.url) == ("GET", url)
    assert list(request.params) == params
    assert request.json is None and request.form is None


def assert_text_kept_exactly(
    handler: ProviderHandler, account: Account, carrying: Callable[[str], CallbackRequest]
) -> None:
    """Inbound text arrives as sent, spaced or empty alike: nothing is stripped."""
    for text in (" STOP \n", ""):
        [sms] = handler.parse_inbound(account, carrying(text))
        assert sms.text == text


def changed(fields: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """`fields` with `changes` applied, where a change to None leaves the field out."""
    return {k: v for k, v in {**fields, **changes}.items() if v is not None}


def balance_call(
    handler: ProviderHandler, account: Account, base_url: str, method: str, url: str
) -> WireRequest:
    """The balance request for `base_url`, which must be `method` on `url`."""
    request = handler.balance_request(account, base_url)
    assert request is not None
    assert (request.method, request.url) == (method, url)
    return request


def assert_all_refused(
    results: Sequence[RecipientResult],
    outcome: Outcome,
    code: str,
    text: str,
    retry_after: float | None,
) -> None:
    """Every result carries the answer's classification and no request ID; the error
    text is readable (no markup from an HTML error page)."""
    for result in results:
        assert result.outcome is outcome
        assert result.request_ids == ()
        assert result.error_code == code
        assert text in result.error_text
        assert "<" not in result.error_text
        assert result.retry_after == retry_after


class Refusal(NamedTuple):
    """An answer that accepts nothing, and how the handler must classify each message."""

    status: int
    body: Any
    outcome: Outcome
    code: str
    text: str
    headers: Mapping[str, str] | None = None
    retry_after: float | None = None

    def answer(self) -> WireResponse:
        return answer(self.status, self.body, self.headers)

    def check(self, results: Sequence[RecipientResult]) -> None:
        assert_all_refused(results, self.outcome, self.code, self.text, self.retry_after)

    def judge(self, handler: ProviderHandler, account: Account, batch: SendBatch) -> None:
        """The handler answers for each message of `batch`, without raising, as `check` says."""
        results = handler.parse_send_response(account, batch, self.answer())
        assert len(results) == len(batch.messages)
        self.check(results)


def refused(
    status: int,
    body: Any,
    outcome: Outcome,
    code: str,
    text: str,
    *,
    headers: Mapping[str, str] | None = None,
    retry_after: float | None = None,
    id: str,
) -> ParameterSet:
    """A `Refusal` as a test case named `id`."""
    return pytest.param(Refusal(status, body, outcome, code, text, headers, retry_after), id=id)


def refused_with_status(status: int, body: Any, text: str, *, id: str) -> ParameterSet:
    """A refusal whose error code is the HTTP status, as for answers that carry no code."""
    return refused(status, body, Outcome.REFUSED, str(status), text, id=id)


HTTP_DATE = "Wed, 21 Oct 2015 07:28:00 GMT"
"""A Retry-After given as a date that has passed: the wait it asks for is none."""


def throttled(
    status: int,
    body: Any,
    code: str,
    text: str,
    *,
    seconds: str,
    header: str = "Retry-After",
    id: str,
    waits: float | None = None,
) -> ParameterSet:
    """A transient refusal whose Retry-After, in seconds, the result must carry (or
    `waits`, where the header is not a number of seconds)."""
    headers = {header: seconds}
    return refused(
        status,
        body,
        Outcome.TRANSIENT,
        code,
        text,
        headers=headers,
        retry_after=float(seconds) if waits is None else waits,
        id=id,
    )


def past_date(
    status: int, body: Any, code: str, text: str, *, header: str = "Retry-After", id: str
) -> ParameterSet:
    """A transient refusal whose Retry-After is a date gone by: the result asks for no
    wait (the dispatcher's floor and backoff still apply)."""
    return throttled(status, body, code, text, seconds=HTTP_DATE, header=header, id=id, waits=0.0)


HTML_PAGE = "<html><head><title>502 Bad Gateway</title></head><body><h1>Oops</h1></body></html>"
"""A proxy's error page: what a handler reports of it must carry no markup."""

# Answers that several providers' handlers classify alike.
# A 500, 502 or 504 does not prove the provider took nothing (a proxy in front of it
# answers them too): the outcome is unknown, never resent.
BAD_GATEWAY_PAGE = refused(502, HTML_PAGE, Outcome.UNKNOWN, "502", "Bad Gateway", id="502")
NOT_FOUND_PAGE = refused(404, HTML_PAGE, Outcome.REFUSED, "404", "Oops", id="404-html")
OK_WITH_A_PAGE = refused(200, HTML_PAGE, Outcome.REFUSED, "200", "unreadable", id="200-html-page")
OK_BUT_EMPTY = refused(200, b"", Outcome.REFUSED, "200", "empty answer", id="200-empty")
INTERNAL_ERROR = refused(500, "Internal error", Outcome.UNKNOWN, "500", "Internal error", id="500")
UNAUTHORIZED = refused(401, "Unauthorized", Outcome.ACCOUNT_ERROR, "401", "Unauthorized", id="401")
RETRY_AFTER_PAST_DATE = past_date(429, b"", "429", "empty answer", id="429-retry-after-past-date")


def outgoing(
    numbers: Iterable[str], text: str, sender: str, encoding: str = "GSM-7", segments: int = 1
) -> tuple[OutgoingSms, ...]:
    """One message per number, with IDs m0, m1, ... in the numbers' order."""
    return tuple(
        OutgoingSms(f"m{i}", number, text, sender, encoding, segments)
        for i, number in enumerate(numbers)
    )


def assert_accepted(result: RecipientResult, request_ids: tuple[str, ...], status: Status) -> None:
    """Accepted under exactly these request IDs, in the status the provider's answer implies."""
    assert result.outcome is Outcome.ACCEPTED
    assert result.request_ids == request_ids
    assert result.status is status


def assert_accepted_only_on_2xx(
    results: Sequence[RecipientResult], status: int, *, says_why: bool = False
) -> None:
    """Whatever the answer, a message is accepted only on 2xx and with request IDs;
    otherwise it carries none (and, with `says_why`, an error code)."""
    for result in results:
        if result.outcome is Outcome.ACCEPTED:
            assert 200 <= status < 300
            assert result.request_ids and all(result.request_ids)
        else:
            assert result.request_ids == ()
            assert result.error_code or not says_why


NO_HEADERS: SearchStrategy[Mapping[str, str]] = st.just({})


def any_send_answer(
    batches: SearchStrategy[SendBatch],
    bodies: SearchStrategy[bytes],
    *,
    accounts: SearchStrategy[Account],
    headers: SearchStrategy[Mapping[str, str]] = NO_HEADERS,
) -> SearchStrategy[tuple[Account, SendBatch, WireResponse]]:
    """Any answer a provider might give to a send: any HTTP status with one of `bodies`
    (and `headers`), answering one of `batches` sent from one of `accounts`."""
    responses = st.builds(WireResponse, st.integers(100, 599), bodies, headers)
    return st.tuples(accounts, batches, responses)


def numbered_batches(
    batch: Callable[..., SendBatch], prefix: str, most: int
) -> SearchStrategy[SendBatch]:
    """Batches of one to `most` recipients numbered `prefix`0, `prefix`1, ..."""
    return st.integers(1, most).map(lambda n: batch(*(f"{prefix}{i}" for i in range(n))))


def assert_covers(table: Iterable[tuple[Any, Any]], known: Iterable[Any]) -> None:
    """A table of cases names every code the provider documents, and no other."""
    assert {code for code, _ in table} == set(known)


def unusable_ids(make: Callable[..., CallbackRequest], field: str) -> list[ParameterSet]:
    """A report whose id `field` is missing, blank or not a scalar: nothing to match it by."""
    return [
        pytest.param(make(**{field: value}), id=f"{field}-{how}")
        for how, value in (("missing", None), ("blank", "  "), ("object", {"id": 1}))
    ]


_NOT_CODES: list[tuple[str, Any]] = [
    ("text", "abc"),
    ("fraction", 4.5),
    ("boolean", True),
    ("list", [4]),
    ("superscript", "\u00b2"),
    ("arabic-indic", "\u0661"),
    ("full-width", "\uff13"),
    ("5000-digits", "4" * 5000),
    ("past-64-bits", 2**64 + 4),
]


def unusable_codes(make: Callable[..., CallbackRequest], field: str) -> list[ParameterSet]:
    """A report whose numeric status `field` is not a whole number written in ASCII
    digits within 64 bits: other scripts' digits and 5,000 digits included."""
    return [pytest.param(make(**{field: value}), id=f"{field}-{how}") for how, value in _NOT_CODES]


def malformed(
    record: Any,
    cut_short: bytes,
    json_of: Callable[[Any], CallbackRequest],
    get_of: Callable[[Mapping[str, Any]], CallbackRequest],
) -> list[ParameterSet]:
    """Envelopes no provider sends around a well-formed `record`: a JSON array of it,
    JSON cut short, and a GET with no fields at all."""
    return [
        pytest.param(json_of([record]), id="json-array"),
        pytest.param(json_of(cut_short), id="invalid-json"),
        pytest.param(get_of({}), id="empty-get"),
    ]


def assert_dlr_invalid(
    handler: ProviderHandler, account: Account, callback: CallbackRequest, match: str | None = None
) -> None:
    with pytest.raises(CallbackInvalid, match=match):
        handler.parse_dlr(account, callback)


def assert_inbound_invalid(
    handler: ProviderHandler, account: Account, callback: CallbackRequest, match: str | None = None
) -> None:
    with pytest.raises(CallbackInvalid, match=match):
        handler.parse_inbound(account, callback)


def assert_balance_invalid(
    handler: ProviderHandler, account: Account, response: WireResponse, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        handler.parse_balance(account, response)


def by_meaning(groups: Mapping[Any, Iterable[Any]]) -> list[tuple[Any, Any]]:
    """A table of cases written as what each group of codes means, a case a code."""
    return [(code, meaning) for meaning, codes in groups.items() for code in codes]


def json_shapes(
    scalars: SearchStrategy[Any], keys: Sequence[str], *, fields: int, leaves: int
) -> SearchStrategy[Any]:
    """JSON values built from `scalars`, lists and objects keyed by the provider's own
    field names: near enough to its answers to reach deep into a handler's parser."""
    return st.recursive(
        scalars,
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(st.sampled_from(list(keys)), inner, max_size=fields)
        ),
        max_leaves=leaves,
    )


def bytes_or_json(
    scalars: SearchStrategy[Any], keys: Sequence[str], *, fields: int, leaves: int
) -> SearchStrategy[bytes]:
    """Any bytes, or a JSON document of `json_shapes`: what a provider could answer."""
    return st.binary(max_size=200) | json_shapes(scalars, keys, fields=fields, leaves=leaves).map(
        lambda value: json.dumps(value).encode()
    )
