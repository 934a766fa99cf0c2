"""Clickatell, Platform SMS REST API (platform.clickatell.com, "SMS integration").

Wire format:
- Send: POST {base}/messages with the integration's API key as the raw `Authorization`
  header (no scheme) and JSON `{"content", "to": [digits, ...], "from"?,
  "clientMessageId"?, "validityPeriod"?}`. `to` takes up to 200 numbers in
  international format without '+' and, being a set (`uniqueItems`), each number once.
  The answer (202) lists `{apiMessageId, accepted, to, errorCode, error,
  errorDescription}` per number, plus a top-level `errorCode` / `error` /
  `errorDescription` that rejects the whole request (401, 402, 400, 503...).
- Status callback: configured on the integration (not per request), pushed as a JSON
  POST or a GET query: `integrationName, messageId, requestId, clientMessageId, to,
  from, statusCode, status, statusDescription, timestamp`. The field set drifted
  between revisions and in real traffic (see `parse_dlr`).
- Reply (MO) callback: `integrationName/integrationId, messageId, replyMessageId,
  apiKey, fromNumber, toNumber, timestamp, text, charset, udh, network, keyword`.
- Poll: GET {base}/public-client/message/status?messageId=<apiMessageId>, answering
  `{..., "status": "RECEIVED_BY_RECIPIENT"}`.
- Balance: GET {base}/public-client/balance, answering `{"balance", "currency"}`.

Why this API and not the "One API" (POST /v1/message, `{"messages": [{"channel",
"to", "content"}]}`): the Platform SMS endpoint is still the one Clickatell's current
API reference lists for SMS integrations, the official SDKs (clickatell-php,
clickatell-python) speak it, and an API key belongs to one integration type, so one
handler cannot serve both. One API callbacks (`{"event": {"messageStatusUpdate":
[...]}}`) use another status numbering and are refused as invalid here.

Account options read here (all optional):
- `validity_period`: minutes Clickatell keeps trying (`validityPeriod`). A message's
  own validity (`valid_for` / `expires_at`) takes its place: the whole minutes that
  remain of it when it is sent.
- `client_message_id` (default true): send smsgw's message ID as `clientMessageId`
  on single-recipient requests; Clickatell echoes it in status callbacks, where it is
  the report's `reference`: a send whose answer was lost is found by it.

Which answers prove a send was not taken (and are retried): HTTP 429 and 503, and the
per-number or top-level error codes of `ERRORS` that Clickatell answers itself (901
"Internal error" included, as Clickatell's own refusal). Any other 5xx is an unknown
outcome, never resent, whatever code its body carries: a proxy may have answered it.
The status look-up takes Clickatell's apiMessageId only, so a send whose answer was
lost cannot be polled; its status callback finds it by `clientMessageId`, or by
recipient when it went in a batch.
The dispatcher itself reads `test_mode`, `poll` and `rate_per_second`; Clickatell has
no native test mode, so test mode is smsgw's dry run.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import handlers.wire as wire
from handlers.base import API_KEY, CallbackRequest, ProviderHandler, WireRequest, WireResponse
from service import model, parsing
from service.errors import CallbackInvalid
from service.model import Account, Outcome, RecipientResult, Report, Status


class _Error(NamedTuple):
    text: str
    outcome: Outcome


# Every documented Clickatell API error code (001-901). An error applies to the whole
# request when it comes at the top level, to one number when it comes in its entry.
# 114 (cannot route) is an account error on purpose: Clickatell cannot reach that
# network, another account may, and only an account error makes smsgw fail over.
ERRORS: dict[int, _Error] = {
    1: _Error("Authentication failed", Outcome.ACCOUNT_ERROR),
    2: _Error("Unknown username or password", Outcome.ACCOUNT_ERROR),
    3: _Error("Session ID expired", Outcome.ACCOUNT_ERROR),
    4: _Error("Account frozen", Outcome.ACCOUNT_ERROR),
    5: _Error("Missing session ID", Outcome.ACCOUNT_ERROR),
    7: _Error("IP lockdown violation", Outcome.ACCOUNT_ERROR),
    100: _Error("Data malformed", Outcome.REFUSED),
    101: _Error("Invalid or missing parameters", Outcome.REFUSED),
    102: _Error("Invalid user data header", Outcome.REFUSED),
    103: _Error("Unknown API message ID", Outcome.REFUSED),
    104: _Error("Unknown client message ID", Outcome.REFUSED),
    105: _Error("Invalid destination address", Outcome.REFUSED),
    106: _Error("Invalid source address", Outcome.SENDER_REJECTED),
    107: _Error("Empty message", Outcome.REFUSED),
    108: _Error("Invalid or missing API ID", Outcome.ACCOUNT_ERROR),
    109: _Error("Missing message ID", Outcome.REFUSED),
    110: _Error("Error with email message", Outcome.REFUSED),
    111: _Error("Invalid protocol", Outcome.REFUSED),
    112: _Error("Invalid message type", Outcome.REFUSED),
    113: _Error("Maximum message parts exceeded", Outcome.REFUSED),
    114: _Error("Cannot route message", Outcome.ACCOUNT_ERROR),
    115: _Error("Message expired", Outcome.REFUSED),
    116: _Error("Invalid Unicode data", Outcome.REFUSED),
    120: _Error("Invalid delivery time", Outcome.REFUSED),
    121: _Error("Destination mobile number blocked", Outcome.REFUSED),
    122: _Error("Destination mobile opted out", Outcome.REFUSED),
    123: _Error("Invalid Sender ID", Outcome.SENDER_REJECTED),
    128: _Error("Number delisted", Outcome.REFUSED),
    130: _Error("Maximum MT limit exceeded", Outcome.ACCOUNT_ERROR),
    201: _Error("Invalid batch ID", Outcome.REFUSED),
    202: _Error("No batch template", Outcome.REFUSED),
    301: _Error("No credit left", Outcome.ACCOUNT_ERROR),
    302: _Error("Max allowed credit", Outcome.ACCOUNT_ERROR),
    901: _Error("Internal error", Outcome.TRANSIENT),
}


class _Code(NamedTuple):
    name: str
    status: Status


# Clickatell's message status codes, with the names newer callbacks and the status
# look-up put in `status` (or, in some traffic, `statusDescription`).
STATUSES: dict[int, _Code] = {
    1: _Code("MESSAGE_UNKNOWN", Status.SUBMITTED),  # unknown ID, or reporting delayed
    2: _Code("MESSAGE_QUEUED", Status.SUBMITTED),
    3: _Code("DELIVERED_TO_GATEWAY", Status.ENROUTE),
    4: _Code("RECEIVED_BY_RECIPIENT", Status.DELIVERED),
    5: _Code("ERROR_WITH_MESSAGE", Status.REJECTED),
    6: _Code("USER_CANCELLED_MESSAGE_DELIVERY", Status.UNDELIVERED),
    7: _Code("ERROR_DELIVERING_MESSAGE", Status.UNDELIVERED),
    8: _Code("MESSAGE_RECEIVED_BY_GATEWAY", Status.SUBMITTED),
    9: _Code("ROUTING_ERROR", Status.UNDELIVERED),
    10: _Code("MESSAGE_EXPIRED", Status.EXPIRED),
    11: _Code("MESSAGE_SCHEDULED", Status.SUBMITTED),
    12: _Code("OUT_OF_CREDIT", Status.FAILED),  # never left Clickatell
    13: _Code("CLICKATELL_CANCELLED_MESSAGE_DELIVERY", Status.REJECTED),
    14: _Code("MAXIMUM_MT_LIMIT_EXCEEDED", Status.FAILED),  # never left Clickatell
}
# Names, and the descriptions of the code tables, as `_name_key` normalizes them.
_NAME_ALIASES: dict[str, int] = {
    "UNKNOWN": 1,
    "QUEUED": 2,
    "USER_CANCELLED": 6,
    "OK": 8,
    "RECEIVED_BY_GATEWAY": 8,
    "EXPIRED": 10,
    "SCHEDULED": 11,
    "MESSAGE_QUEUED_FOR_LATER_DELIVERY": 11,
    "MESSAGE_SCHEDULED_FOR_LATER_DELIVERY": 11,
    "CANCELLED_BY_CLICKATELL": 13,
    "MAX_MT_LIMIT_EXCEEDED": 14,
}
_CODE_BY_NAME: dict[str, int] = {
    **{code.name: n for n, code in STATUSES.items()},
    **_NAME_ALIASES,
}

_NON_WORD = re.compile(r"[^A-Z0-9]+")
_CODE_BY_TEXT = {_NON_WORD.sub(" ", e.text.upper()).strip(): n for n, e in ERRORS.items()}


_NOT_IN_ANSWER = "Clickatell's answer: no apiMessageId for this number"


class ClickatellHandler(ProviderHandler):
    name = "clickatell"
    display_name = "Clickatell"
    docs_url = "https://docs.clickatell.com"
    public_base_url = "https://platform.clickatell.com"
    credentials = API_KEY
    example_account = """\
priority = 60
"""
    max_batch = 200
    # 35 concatenated parts of 153 GSM-7 characters, Clickatell's documented ceiling.
    max_text_chars = 5355

    # -- sending -------------------------------------------------------------------

    def send_request(self, account: Account, batch: model.SendBatch) -> WireRequest:
        first = batch.messages[0]
        # `to` is a set at Clickatell: a number repeated in one batch goes once, and
        # parse_send_response asks for the other copies to be sent again.
        numbers = list(dict.fromkeys(wire.digits_of(m.to) for m in batch.messages))
        body: dict[str, Any] = {"content": first.text, "to": numbers}
        sender = _sender(first.sender)
        if sender:
            body["from"] = sender
        if len(batch.messages) == 1 and account.options.get("client_message_id", True):
            body["clientMessageId"] = first.message_id
        minutes = wire.validity(account.options.get("validity_period"), first.validity, 60, None)
        if minutes is not None:
            body["validityPeriod"] = minutes
        return wire.json_api_post(
            f"{wire.resolve_base(batch.base_url, self.public_base_url)}/messages",
            _authorization(account),
            body,
        )

    def parse_send_response(
        self, account: Account, batch: model.SendBatch, response: WireResponse
    ) -> list[RecipientResult]:
        body = response.json()
        if not isinstance(body, dict):
            return [_unreadable(response, body)] * len(batch.messages)
        overall = _overall_failure(response, body)
        entries = [e for e in _as_list(body.get("messages")) if isinstance(e, dict)]
        accepting = 200 <= response.status_code < 300
        # One answer per number sent, in the order `send_request` put them in `to`.
        numbers = list(dict.fromkeys(wire.number_key(m.to) for m in batch.messages))
        claimed: set[int] = set()
        by_number: dict[str, RecipientResult] = {}
        for position, number in enumerate(numbers):
            entry = _claim(entries, number, position, len(numbers), claimed)
            by_number[number] = (
                (overall or wire.missing_from_answer(response, _NOT_IN_ANSWER))
                if entry is None
                else _entry_result(entry, response, overall, accepting=accepting)
            )
        results: list[RecipientResult] = []
        seen: set[str] = set()
        for message in batch.messages:
            number = wire.number_key(message.to)
            result = by_number[number]
            results.append(_duplicate(result) if number in seen else result)
            seen.add(number)
        return results

    # -- callbacks -----------------------------------------------------------------

    def parse_dlr(self, account: Account, callback: CallbackRequest) -> list[Report]:
        """Status callbacks, in every field set seen in Clickatell's docs and traffic.

        The ID is `messageId` (or `apiMessageId` / `apiMsgId` of older revisions); the
        status is `statusCode` (4 or "004"), `status` (a code or a name like
        RECEIVED_BY_RECIPIENT) or, in some traffic, only a name in
        `statusDescription`. When a known name and the code disagree, the name wins:
        integrators report codes that do not match the documented table.
        """
        if callback.body.lstrip()[:1] == b"[":
            items = callback.json()
            if not isinstance(items, list) or not items:
                raise CallbackInvalid("a Clickatell status callback list must not be empty")
            reports = []
            for item in items:
                if not isinstance(item, dict):
                    raise CallbackInvalid("each Clickatell status callback must be an object")
                reports.append(_report({**dict(callback.query), **item}))
            return reports
        fields = callback.fields()
        if isinstance(fields.get("event"), dict):
            raise CallbackInvalid(
                "a Clickatell One API event; this account speaks the Platform SMS API"
            )
        return [_report(fields)]

    def parse_inbound(self, account: Account, callback: CallbackRequest) -> list[model.InboundSms]:
        fields = callback.fields()
        sender = wire.as_text(_first(fields, "fromNumber", "from"))
        raw_text = fields["text"] if "text" in fields else fields.get("content")
        if not sender or raw_text is None or isinstance(raw_text, dict | list | bool):
            raise CallbackInvalid("a Clickatell reply callback needs fromNumber and text")
        return [
            model.InboundSms(
                sender=sender,
                recipient=wire.as_text(_first(fields, "toNumber", "to")),
                text=wire.as_text(raw_text, strip=False),
                provider_id=wire.as_text(
                    _first(fields, "messageId", "moMessageId", "replyMessageId")
                ),
            )
        ]

    # -- polling -------------------------------------------------------------------

    def poll_request(
        self, account: Account, base_url: str, request_ids: Sequence[str]
    ) -> WireRequest | None:
        """The status of the first ID: the look-up takes one `messageId` per request."""
        message_id = wire.first_id(request_ids)
        if message_id is None:
            return None
        return wire.json_api_get(
            f"{wire.resolve_base(base_url, self.public_base_url)}/public-client/message/status",
            _authorization(account),
            params=(("messageId", message_id),),
        )

    def poll_reports(
        self, account: Account, request_ids: Sequence[str], body: dict[str, Any]
    ) -> list[Report]:
        fields = dict(body)
        if not wire.as_text(_first(fields, "messageId", "apiMessageId", "apiMsgId")):
            if len(request_ids) != 1:
                return []
            fields["messageId"] = request_ids[0]
        try:
            return [_report(fields)]
        except CallbackInvalid:
            return []

    # -- balance -------------------------------------------------------------------

    def balance_request(self, account: Account, base_url: str) -> WireRequest | None:
        base = wire.resolve_base(base_url, self.public_base_url)
        return wire.json_api_get(f"{base}/public-client/balance", _authorization(account))

    def parse_balance(self, account: Account, response: WireResponse) -> model.Balance:
        body = response.json()
        if not 200 <= response.status_code < 300 or not isinstance(body, dict):
            _, text = _error_of(body) if isinstance(body, dict) else (None, "")
            detail = text or wire.describe_unreadable("Clickatell", response, body)
            raise ValueError(f"Clickatell balance look-up failed: {detail}")
        amount = wire.as_float(body.get("balance"))
        if amount is None:
            raise ValueError("Clickatell's balance answer has no numeric balance")
        return model.Balance(amount, wire.as_text(body.get("currency")))


# -- sending helpers ---------------------------------------------------------------


def _sender(sender: str) -> str:
    """A numeric sender in international digits, an alphanumeric one as it is."""
    stripped = sender.strip()
    if stripped.startswith("+") and parsing.is_digits(stripped[1:]):
        return stripped[1:]
    return stripped


def _claim(
    entries: list[dict[str, Any]], number: str, index: int, size: int, claimed: set[int]
) -> dict[str, Any] | None:
    """The answer entry for a number: by its `to`, else by position when none has one."""
    for position, entry in enumerate(entries):
        if (
            position not in claimed
            and wire.number_key(wire.as_text(entry.get("to"))) == number != ""
        ):
            claimed.add(position)
            return entry
    if len(entries) == size and index not in claimed and not wire.as_text(entries[index].get("to")):
        claimed.add(index)
        return entries[index]
    return None


def _entry_result(
    entry: Mapping[str, Any],
    response: WireResponse,
    overall: RecipientResult | None,
    *,
    accepting: bool,
) -> RecipientResult:
    request_id = wire.as_text(entry.get("apiMessageId"))
    accepted = entry.get("accepted")
    says_accepted = accepted is True or wire.as_text(accepted).lower() == "true"
    code, text = _error_of(entry)
    if accepting and request_id and (says_accepted or (accepted is None and not code and not text)):
        return RecipientResult(Outcome.ACCEPTED, (request_id,), Status.SUBMITTED)
    if code is None and not text:
        if overall is not None:
            return overall
        if accepting and says_accepted:
            return RecipientResult(
                Outcome.REFUSED,
                error_code=str(response.status_code),
                error_text="accepted by Clickatell without an apiMessageId",
            )
        return RecipientResult(
            _outcome_by_http(response.status_code),
            error_code=str(response.status_code),
            error_text="not accepted by Clickatell (no error given)",
            retry_after=_retry_after_if_transient(response),
        )
    return _failure(code, text, response)


def _overall_failure(response: WireResponse, body: Mapping[str, Any]) -> RecipientResult | None:
    """The request-level failure, if the answer (status or top-level error) has one."""
    code, text = _error_of(body)
    if code is not None or text:
        return _failure(code, text, response)
    if not 200 <= response.status_code < 300:
        return RecipientResult(
            _outcome_by_http(response.status_code),
            error_code=str(response.status_code),
            error_text=wire.describe_unreadable("Clickatell", response, body),
            retry_after=_retry_after_if_transient(response),
        )
    return None


def _failure(code: int | None, text: str, response: WireResponse) -> RecipientResult:
    known = ERRORS.get(code) if code is not None else None
    outcome = _outcome_by_http(response.status_code)
    if known is not None and outcome is not Outcome.UNKNOWN:
        # Clickatell's own code, unless the HTTP status says the answer may not be
        # Clickatell's last word (a 500, 502 or 504 from whatever is in front of it).
        outcome = known.outcome
    wait = wire.retry_after(response.headers) if outcome is Outcome.TRANSIENT else None
    return RecipientResult(
        outcome,
        error_code=f"{code:03d}" if code is not None else str(response.status_code),
        error_text=text or (known.text if known else f"Clickatell error {code}"),
        retry_after=wait,
    )


def _outcome_by_http(status_code: int) -> Outcome:
    if status_code in (401, 402, 403):
        return Outcome.ACCOUNT_ERROR
    return wire.server_failure(status_code) or Outcome.REFUSED


def _retry_after_if_transient(response: WireResponse) -> float | None:
    if _outcome_by_http(response.status_code) is Outcome.TRANSIENT:
        return wire.retry_after(response.headers)
    return None


def _error_of(source: Mapping[str, Any]) -> tuple[int | None, str]:
    """The Clickatell error code and text in an answer or an entry, if any.

    The documented shape is `errorCode` (an integer), `error` and `errorDescription`;
    the SDKs' fixtures show `error` alone (text), and older answers nest `error` as
    `{code, description}`. A text without a code is matched against the table.
    """
    raw_code: Any = source.get("errorCode")
    error = source.get("error")
    texts = [source.get("errorDescription")]
    if isinstance(error, dict):
        raw_code = raw_code if raw_code is not None else error.get("code")
        texts = [error.get("description"), error.get("message"), *texts]
    else:
        texts = [error, *texts]
    code = wire.as_int(raw_code) or None  # 0 and null both mean no error
    parts = [t for t in (wire.as_text(t) for t in texts) if t]
    text = ": ".join(dict.fromkeys(p.rstrip(".") for p in parts))
    if code is None and parts:
        code = _CODE_BY_TEXT.get(_NON_WORD.sub(" ", parts[0].upper()).strip())
    return code, text


def _duplicate(earlier: RecipientResult) -> RecipientResult:
    if earlier.outcome is not Outcome.ACCEPTED:
        return earlier
    return RecipientResult(
        Outcome.TRANSIENT,
        error_code="duplicate",
        error_text="the number was already in this request; Clickatell takes it once per "
        "request, so this copy goes in a later one",
    )


def _unreadable(response: WireResponse, body: Any) -> RecipientResult:
    return RecipientResult(
        _outcome_by_http(response.status_code)
        if not 200 <= response.status_code < 300
        else Outcome.REFUSED,
        error_code=str(response.status_code),
        error_text=wire.describe_unreadable("Clickatell", response, body),
        retry_after=_retry_after_if_transient(response),
    )


# -- report helpers ----------------------------------------------------------------


def _report(fields: Mapping[str, Any]) -> Report:
    request_id = wire.as_text(_first(fields, "messageId", "apiMessageId", "apiMsgId"))
    if not request_id:
        raise CallbackInvalid("a Clickatell status callback needs a messageId")
    code, name, description = _status_fields(fields)
    status, text = _status_of(code, name, description)
    return Report(
        request_id=request_id,
        status=status,
        recipient=wire.as_text(_first(fields, "to", "toNumber")),
        error_code=f"{code:03d}" if code is not None else "",
        error_text=text,
        reference=wire.as_text(fields.get("clientMessageId")),
    )


def _status_fields(fields: Mapping[str, Any]) -> tuple[int | None, str, str]:
    """(code, known name, description) from whichever status fields the callback has."""
    raw_code = fields.get("statusCode")
    code: int | None = None
    if not wire.is_blank(raw_code):
        code = wire.as_int(raw_code)
        if code is None:
            raise CallbackInvalid("statusCode must be an integer", field="statusCode")
    raw_status = fields.get("status")
    if isinstance(raw_status, dict | list | bool):
        raise CallbackInvalid("status must be a code or a name", field="status")
    description = wire.as_text(fields.get("statusDescription"))
    status_text = wire.as_text(raw_status)
    name = ""
    given_name = ""
    if status_text:
        as_number = wire.as_int(status_text)
        if as_number is not None:
            code = code if code is not None else as_number
        else:
            given_name = _name_key(status_text)
            if given_name in _CODE_BY_NAME:
                name = given_name
    if not name and description and _name_key(description) in _CODE_BY_NAME:
        name = _name_key(description)
    if code is None and not name:
        if given_name:
            raise CallbackInvalid(f"{status_text!r} is not a Clickatell status", field="status")
        raise CallbackInvalid("a Clickatell status callback needs statusCode or status")
    if name:
        named = _CODE_BY_NAME[name]
        if code is not None and code != named:
            description = _join(description, f"statusCode {code} disagrees with {name}")
        code = named
    elif given_name:
        description = _join(description, f"status {status_text}")
    return code, name, description


def _status_of(code: int | None, name: str, description: str) -> tuple[Status, str]:
    entry = STATUSES.get(code) if code is not None else None
    if entry is None:
        # A code Clickatell never documented must neither finalize nor undo a message.
        return Status.ENROUTE, _join(f"unknown status code {code}", description)
    return entry.status, _join(entry.name, description)


def _name_key(value: str) -> str:
    return _NON_WORD.sub("_", value.upper()).strip("_")


def _join(head: str, tail: str) -> str:
    if not tail or _name_key(tail) == _name_key(head):
        return head
    return f"{head}: {tail}"


# -- value helpers -----------------------------------------------------------------


def _first(fields: Mapping[str, Any], *keys: str) -> Any:
    """The first of `keys` present with a non-blank value."""
    for key in keys:
        value = fields.get(key)
        if not wire.is_blank(value):
            return value
    return None


def _as_list(value: Any) -> Iterable[Any]:
    return value if isinstance(value, list) else ()


def _authorization(account: Account) -> str:
    # Clickatell takes the bare key, without a scheme such as "Bearer".
    return account.credentials.get("api_key", "")
