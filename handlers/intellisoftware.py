"""IntelliSoftware (IntelliSMS, www.intellisoftware.co.uk), the HTTP interface.

Wire format (the username/password interface of the "HTTP Interface" pages):
- Send: {base}/smsgateway/sendmsg.aspx, form fields as a POST body or as a GET query:
  `username`, `password`, `to` (up to 100 numbers, international digits without '+',
  comma separated), `text`, `from` (the sender, left out when empty), `maxconcat`
  (most parts per recipient; IntelliSoftware's default is 1) and `type`: left out for
  plain text, `2` with `hex` (the text as UCS-2 hex) for Unicode, `6` for Voice-SMS.
  The answer is plain text: one line `ID:<id>` for one recipient, or `ERR:<CODE>` when
  the whole submission fails; otherwise one line per recipient, `<number>,ID:<id>` or
  `<number>,ERR:<CODE>`. The ID covers the whole submission and is the same for every
  recipient, so reports are matched by ID and recipient (`shares_request_ids`). The
  numbers in the answer are IntelliSoftware's: dialling codes may be added and
  duplicates removed, so lines are matched to messages by their digits, and one line
  answers every message sent to its number.
- Delivery reports ("Message Status Reports"): pushed, not polled. IntelliSoftware
  POSTs the form fields `msgid`, `status` (a number) and `toaddr` to the URL set in
  the account's Preferences > Forwarding tab (give it `callback_urls.dlr`); it is not
  set per request, so `SendBatch.dlr_url` is unused. It retries every 5 minutes until
  it gets HTTP 200. The HTTP interface has no status query, so there is no polling,
  and takes no client reference, so a send whose answer was lost is found by the
  report's `toaddr` when exactly one unresolved send to that number fits.
- Inbound ("Receive SMS Message"): forwarded from the same Forwarding tab (give it
  `callback_urls.inbound`), either as the classic POST form `from`, `text`, `msgid`,
  `sent`, `networkcode`, or as the newer JSON `{"messages": [{"from", "to",
  "messageid", "channel", "sent", "content": {"msgtype", "text"}}]}`. Any 200 answer
  will do; the content is ignored.
- Balance: {base}/smsgateway/getbalance.aspx with `username` and `password`, answered
  `BALANCE:<credits>` or `ERR:<CODE>`.
- No test mode: an account in test mode is a dry run inside smsgw.

Account options read:
- `method`: "POST" (default; a form body, as IntelliSoftware's own SDK sends) or "GET"
  (the same fields in the query string). Used for sends and the balance call.
- `maxconcat`: the most parts one message may be sent as on this account (default 3).
  Each request asks for exactly the parts the text needs. A text that needs more parts
  than the account allows is refused before anything is sent (SendRefused with
  `MAXCONCAT_EXCEEDED`), never truncated. Voice-SMS (type 6) is a call, not SMS
  parts, and is exempt.
- `type`: 1 (text, default) or 6 (Voice-SMS, text to speech).
- `unicode`: "hex" (default: UCS-2 texts go as documented, `type=2` with `hex`) or
  "text" (send them in `text` like any other and let IntelliSoftware encode them).

Send errors (the provider's code is kept as error_code, without the `ERR:` prefix):
- ACCOUNT_ERROR: LOGIN_INVALID, INSUFFICIENT_CREDIT, NO_USERNAME, NO_PASSWORD, and the
  access-key flavour's AUTH_PARAMETER_MISSING, AUTH_PARAMETER_INVALID,
  CONNECTION_NOT_SECURE, DAILY_ALLOWANCE_EXCEEDED.
- REFUSED: every other NO_<PARAMETER> (a mandatory parameter is missing: NO_TO,
  NO_TEXT...), INVALID_NUMBER, INVALID_REQUEST, PARAMETER_MISSING and
  PARAMETER_INVALID (the Unicode `hex`), and any undocumented code...
- SENDER_REJECTED: ...except undocumented codes naming the sender (SENDER, ORIGINATOR
  or FROM in the code), where the fallback sender may help.
- TRANSIENT: GATEWAY_ERROR, INTERNAL_ERROR: IntelliSoftware's own answer that it did
  not take the submission.
HTTP 401/403 is an account error, HTTP 429/503 transient (with Retry-After) and any
other 5xx unknown (a proxy's 500/502/504 does not prove nothing was sent),
whatever the body says. Only a 2xx answer can accept: any other status is refused
unless its body carries an ERR: code, which then classifies it. A 2xx body that is
neither `ID:` nor `ERR:` is refused with the body quoted, never resent.

Status report codes: 0 Unknown -> ENROUTE (says nothing final), 1 OK -> SUBMITTED,
2 Queued -> SUBMITTED, 3 Sent -> ENROUTE, 4 Delivered -> DELIVERED, 5 Error With
Request -> FAILED, 6 Unable To Deliver -> UNDELIVERED, 7 Routing Error -> UNDELIVERED,
8 Expired -> EXPIRED, 11 Acknowledged By Recipient (Voice-SMS) -> DELIVERED,
12 Rejected By Recipient (Voice-SMS) -> UNDELIVERED. An undocumented number is kept as
ENROUTE (it can neither finalize nor undo a message); a status that is not a number
is invalid.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import handlers.wire as wire
from handlers.base import (
    LOGIN,
    CallbackRequest,
    ProviderHandler,
    SendRefused,
    WireRequest,
    WireResponse,
)
from service import model
from service.errors import CallbackInvalid
from service.model import Account, Outcome, RecipientResult, Report, Status

SEND_PATH = "/smsgateway/sendmsg.aspx"
BALANCE_PATH = "/smsgateway/getbalance.aspx"
DEFAULT_MAXCONCAT = 3
TYPE_TEXT, TYPE_UNICODE, TYPE_VOICE = 1, 2, 6
MAXCONCAT_EXCEEDED = "MAXCONCAT_EXCEEDED"
MISSING = "missing_from_answer"


_Error = wire.ErrorMeaning


# The documented ERR: codes, described in our own words.
_ERRORS: dict[str, _Error] = {
    "LOGIN_INVALID": _Error(Outcome.ACCOUNT_ERROR, "username or password is invalid"),
    "INSUFFICIENT_CREDIT": _Error(
        Outcome.ACCOUNT_ERROR, "the account's credit does not cover the request"
    ),
    "INVALID_NUMBER": _Error(Outcome.REFUSED, "no route to the destination number"),
    "INVALID_REQUEST": _Error(Outcome.REFUSED, "IntelliSoftware found the request invalid"),
    "PARAMETER_MISSING": _Error(Outcome.REFUSED, "the Unicode 'hex' parameter is missing"),
    "PARAMETER_INVALID": _Error(Outcome.REFUSED, "the Unicode 'hex' parameter is malformed"),
    "GATEWAY_ERROR": _Error(Outcome.TRANSIENT, "the gateway cannot take the request now"),
    "INTERNAL_ERROR": _Error(Outcome.TRANSIENT, "IntelliSoftware cannot take the request now"),
    # The access-key flavour of the same interface answers in the same text format.
    "AUTH_PARAMETER_MISSING": _Error(
        Outcome.ACCOUNT_ERROR, "authentication parameters are missing"
    ),
    "AUTH_PARAMETER_INVALID": _Error(
        Outcome.ACCOUNT_ERROR, "authentication parameters are invalid"
    ),
    "CONNECTION_NOT_SECURE": _Error(
        Outcome.ACCOUNT_ERROR, "IntelliSoftware requires HTTPS for this account"
    ),
    "DAILY_ALLOWANCE_EXCEEDED": _Error(
        Outcome.ACCOUNT_ERROR, "the account's daily sending allowance is used up"
    ),
}
# ERR:NO_<PARAMETER>: a mandatory parameter is missing. Missing credentials are the
# account's problem (another account may work); anything else is this request's.
_MISSING_PREFIX = "NO_"
_CREDENTIAL_PARAMETERS = frozenset({"USERNAME", "PASSWORD"})
_SENDER_WORDS = ("SENDER", "ORIGINATOR", "FROM")


class _Code(NamedTuple):
    status: Status
    text: str


_STATUS_TABLE: dict[int, _Code] = {
    0: _Code(Status.ENROUTE, "Unknown"),
    1: _Code(Status.SUBMITTED, "OK"),
    2: _Code(Status.SUBMITTED, "Message Queued"),
    3: _Code(Status.ENROUTE, "Message Sent"),
    4: _Code(Status.DELIVERED, "Message Delivered"),
    5: _Code(Status.FAILED, "Error With Request"),
    6: _Code(Status.UNDELIVERED, "Unable To Deliver"),
    7: _Code(Status.UNDELIVERED, "Routing Error"),
    8: _Code(Status.EXPIRED, "Message Expired"),
    11: _Code(Status.DELIVERED, "Acknowledged By Recipient (Voice-SMS)"),
    12: _Code(Status.UNDELIVERED, "Rejected By Recipient (Voice-SMS)"),
}

_NUMBER_PART = re.compile(r"[+0-9][0-9 ()./-]*")


class IntelliSoftwareHandler(ProviderHandler):
    """One form request per batch of up to 100 numbers; the ID it answers is shared by
    the batch, so a report is matched by that ID and its recipient."""

    name = "intellisoftware"
    display_name = "IntelliSoftware"
    docs_url = "https://www.intellisoftware.co.uk"
    public_base_url = "https://www.intellisoftware.co.uk"
    credentials = LOGIN
    example_account = """\
sender = "SMSGW"
priority = 30
"""
    max_batch = 100
    # Ten GSM-7 parts: the most concatenation public IntelliSMS client code asks for.
    max_text_chars = 1530
    shares_request_ids = True

    # -- sending -------------------------------------------------------------------

    def send_request(self, account: Account, batch: model.SendBatch) -> WireRequest:
        first = batch.messages[0]
        plan = _plan(account, batch)
        if plan.parts > plan.allowed:
            raise SendRefused(
                MAXCONCAT_EXCEEDED,
                f"the text needs {plan.parts} parts but the account allows maxconcat "
                f"{plan.allowed}",
            )
        # IntelliSoftware drops duplicates itself; sending each number once says so.
        numbers = dict.fromkeys(wire.digits_of(m.to) for m in batch.messages)
        fields: list[tuple[str, str]] = [
            ("username", account.credentials.get("username", "")),
            ("password", account.credentials.get("password", "")),
            ("to", ",".join(numbers)),
        ]
        if first.sender:
            fields.append(("from", first.sender))
        if plan.message_type == TYPE_UNICODE:
            fields.append(("type", str(TYPE_UNICODE)))
            fields.append(("hex", first.text.encode("utf-16-be").hex().upper()))
        else:
            fields.append(("text", first.text))
            if plan.message_type == TYPE_VOICE:
                fields.append(("type", str(TYPE_VOICE)))
        if plan.maxconcat:
            fields.append(("maxconcat", str(plan.maxconcat)))
        return _request(
            account, f"{wire.resolve_base(batch.base_url, self.public_base_url)}{SEND_PATH}", fields
        )

    def parse_send_response(
        self, account: Account, batch: model.SendBatch, response: WireResponse
    ) -> list[RecipientResult]:
        code = response.status_code
        answer = _read_answer(response.text)
        decided = wire.status_failure(code)
        if decided is not None:
            failure = _http_failure(decided, response, answer)
            return wire.for_each(batch, wire.with_retry_after(failure, response))
        if not 200 <= code < 300:
            # Only a success status can carry IDs; an error code in the body still counts.
            lines = answer.unnumbered or answer.numbered
            error = next((line.error for line in lines if not line.request_id), None)
            outcome = _error_of(error).outcome if error is not None else Outcome.REFUSED
            return wire.for_each(batch, _http_failure(outcome, response, answer))
        if not answer.numbered and not answer.unnumbered:
            return wire.for_each(batch, _unreadable(response))
        if not answer.numbered:
            # One line for the whole submission: its one ID, or why it all failed.
            return wire.for_each(batch, _result_of(answer.unnumbered[0]))
        return _match_lines(batch, answer, response)

    # -- callbacks -----------------------------------------------------------------

    def parse_dlr(self, account: Account, callback: CallbackRequest) -> list[Report]:
        return [_report(callback.fields())]

    def parse_inbound(self, account: Account, callback: CallbackRequest) -> list[model.InboundSms]:
        fields = callback.fields()
        if "messages" in fields:
            return _inbound_json(fields["messages"])
        return [_inbound_form(fields)]

    # -- balance -------------------------------------------------------------------

    def balance_request(self, account: Account, base_url: str) -> WireRequest | None:
        fields = [
            ("username", account.credentials.get("username", "")),
            ("password", account.credentials.get("password", "")),
        ]
        return _request(
            account, f"{wire.resolve_base(base_url, self.public_base_url)}{BALANCE_PATH}", fields
        )

    def parse_balance(self, account: Account, response: WireResponse) -> model.Balance:
        text = response.text.lstrip("\ufeff").strip()
        upper = text.upper()
        if upper.startswith("BALANCE:"):
            value = text[len("BALANCE:") :].strip()
            amount = wire.as_float(value)
            if amount is not None:
                return model.Balance(amount, "credits")
            raise ValueError(f"IntelliSoftware's balance is not a number: {value[:40]!r}")
        if upper.startswith("ERR:"):
            code = text[len("ERR:") :].strip().upper()
            raise ValueError(f"IntelliSoftware answered ERR:{code} ({_error_of(code).text})")
        raise ValueError(wire.describe_unreadable("IntelliSoftware", response, None))


# -- sending helpers ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Plan:
    message_type: int
    parts: int
    """The parts the text needs (0 for Voice-SMS, which is not sent as parts)."""
    allowed: int
    """The most parts the account allows."""

    @property
    def maxconcat(self) -> int:
        return self.parts


def _plan(account: Account, batch: model.SendBatch) -> _Plan:
    first = batch.messages[0]
    allowed = _positive_int(account.options.get("maxconcat"), DEFAULT_MAXCONCAT)
    if _positive_int(account.options.get("type"), TYPE_TEXT) == TYPE_VOICE:
        return _Plan(TYPE_VOICE, 0, allowed)
    as_hex = first.encoding.upper() == "UCS-2" and account.options.get("unicode") != "text"
    parts = max((max(m.segments, 1) for m in batch.messages), default=1)
    return _Plan(TYPE_UNICODE if as_hex else TYPE_TEXT, parts, allowed)


def _request(account: Account, url: str, fields: list[tuple[str, str]]) -> WireRequest:
    if str(account.options.get("method", "POST")).upper() == "GET":
        return WireRequest("GET", url, params=tuple(fields))
    return WireRequest(
        "POST",
        url,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        form=tuple(fields),
    )


class _Line(NamedTuple):
    number: str
    """Digits as IntelliSoftware wrote them; "" on a line without a number."""
    request_id: str
    error: str
    """The ERR: code, upper case; "" for an ID line."""


@dataclass(frozen=True, slots=True)
class _Answer:
    numbered: list[_Line]
    unnumbered: list[_Line]


def _read_answer(text: str) -> _Answer:
    numbered: list[_Line] = []
    unnumbered: list[_Line] = []
    for raw in text.lstrip("\ufeff").splitlines():
        line = raw.strip()
        if not line:
            continue
        number, sep, rest = line.partition(",")
        if sep and _NUMBER_PART.fullmatch(number.strip()):
            parsed = _line_result(rest, wire.digits_of(number))
            if parsed is not None:
                numbered.append(parsed)
            continue
        parsed = _line_result(line, "")
        if parsed is not None:
            unnumbered.append(parsed)
    return _Answer(numbered, unnumbered)


def _line_result(token: str, number: str) -> _Line | None:
    """An `ID:<id>` or `ERR:<code>` result (a space after the colon is tolerated)."""
    token = token.strip()
    head, sep, value = token.partition(":")
    if not sep:
        return None
    kind, value = head.strip().upper(), value.strip()
    if kind == "ID" and value and "," not in value:
        return _Line(number, value, "")
    if kind == "ERR":
        return _Line(number, "", value.upper())
    return None


def _result_of(line: _Line) -> RecipientResult:
    if line.request_id:
        return RecipientResult(Outcome.ACCEPTED, (line.request_id,), Status.SUBMITTED)
    error = _error_of(line.error)
    return RecipientResult(error.outcome, error_code=line.error or "ERR", error_text=error.text)


def _error_of(code: str) -> _Error:
    known = _ERRORS.get(code)
    if known is not None:
        return known
    if code.startswith(_MISSING_PREFIX) and len(code) > len(_MISSING_PREFIX):
        parameter = code[len(_MISSING_PREFIX) :]
        outcome = Outcome.ACCOUNT_ERROR if parameter in _CREDENTIAL_PARAMETERS else Outcome.REFUSED
        return _Error(outcome, f"the mandatory parameter '{parameter.lower()}' is missing")
    if any(word in code for word in _SENDER_WORDS):
        return _Error(Outcome.SENDER_REJECTED, f"undocumented error {code or '(blank)'}: sender")
    return _Error(Outcome.REFUSED, f"undocumented IntelliSoftware error {code or '(blank)'}")


def _match_lines(
    batch: model.SendBatch, answer: _Answer, response: WireResponse
) -> list[RecipientResult]:
    """Each message's line, by its number; duplicates of a number share its one line."""
    by_number: dict[str, _Line] = {}
    for line in answer.numbered:
        by_number.setdefault(wire.number_key(line.number), line)
    keys = [wire.number_key(m.to) for m in batch.messages]
    rewritten = _by_suffix(
        [key for key in dict.fromkeys(keys) if key not in by_number],
        [key for key in by_number if key not in keys],
    )
    # A whole-submission line among numbered ones answers for the messages left over.
    fallback = answer.unnumbered[0] if answer.unnumbered else None
    results = []
    for key in keys:
        found = by_number.get(key) or by_number.get(rewritten.get(key, "")) or fallback
        results.append(_result_of(found) if found is not None else _missing(response))
    return results


def _by_suffix(ours: list[str], theirs: list[str]) -> dict[str, str]:
    """Our numbers paired with the answer's rewritten ones, where the pairing is certain.

    A number IntelliSoftware rewrote (a dialling code added or dropped) still ends like
    ours; it is taken only when exactly one of ours and one of theirs fit each other.
    """

    pairs: dict[str, str] = {}
    for key in ours:
        candidates = [other for other in theirs if wire.same_subscriber(key, other)]
        if len(candidates) == 1 and sum(wire.same_subscriber(k, candidates[0]) for k in ours) == 1:
            pairs[key] = candidates[0]
    return pairs


def _missing(response: WireResponse) -> RecipientResult:
    return RecipientResult(
        Outcome.REFUSED,
        error_code=MISSING,
        error_text=(
            "IntelliSoftware's answer has no line for this number "
            f"(HTTP {response.status_code}): {wire.snippet(response.text)}"
        ),
    )


def _http_failure(outcome: Outcome, response: WireResponse, answer: _Answer) -> RecipientResult:
    lines = answer.unnumbered or answer.numbered
    error = next((line.error for line in lines if not line.request_id), None)
    code = (error or "ERR") if error is not None else ""
    text = f"HTTP {response.status_code}"
    if error is not None:
        text += f": ERR:{error} ({_error_of(error).text})"
    elif response.body.strip():
        text += f": {wire.snippet(response.text)}"
    return RecipientResult(outcome, error_code=code or str(response.status_code), error_text=text)


def _unreadable(response: WireResponse) -> RecipientResult:
    return RecipientResult(
        Outcome.REFUSED,
        error_code=str(response.status_code),
        error_text=wire.describe_unreadable("IntelliSoftware", response, None),
    )


def _positive_int(value: Any, default: int) -> int:
    number = wire.as_int(value, signed=False)
    return number if number is not None and number >= 1 else default


# -- callback helpers --------------------------------------------------------------


def _report(fields: Mapping[str, Any]) -> Report:
    msgid = wire.as_text(fields.get("msgid"))
    if not msgid:
        raise CallbackInvalid("an IntelliSoftware status report needs a msgid", field="msgid")
    raw = fields.get("status")
    if wire.is_blank(raw):
        raise CallbackInvalid("an IntelliSoftware status report needs a status", field="status")
    code = wire.as_int(raw, signed=False)
    if code is None or code < 0:
        raise CallbackInvalid("status is not an IntelliSoftware status code", field="status")
    recipient = wire.as_text(fields.get("toaddr"))
    if not wire.digits_of(recipient):
        # The ID covers the whole submission: without the number nothing can match.
        raise CallbackInvalid("an IntelliSoftware status report needs toaddr", field="toaddr")
    entry = _STATUS_TABLE.get(code)
    status, text = (
        (entry.status, entry.text) if entry else (Status.ENROUTE, f"unknown status code {code}")
    )
    return Report(
        request_id=msgid,
        status=status,
        recipient=recipient,
        error_code=str(code),
        error_text=text,
    )


def _inbound_form(fields: Mapping[str, Any]) -> model.InboundSms:
    sender = wire.as_text(fields.get("from"))
    text = fields.get("text")
    if not sender or not isinstance(text, str | int | float) or isinstance(text, bool):
        raise CallbackInvalid("an IntelliSoftware inbound SMS needs from and text")
    return model.InboundSms(
        sender=sender,
        recipient=wire.as_text(fields.get("to")),
        text=wire.as_text(text, strip=False),
        provider_id=wire.as_text(fields.get("msgid")) or wire.as_text(fields.get("messageid")),
    )


def _inbound_json(messages: Any) -> list[model.InboundSms]:
    if not isinstance(messages, list) or not messages:
        raise CallbackInvalid("messages must be a non-empty list", field="messages")
    received = []
    for entry in messages:
        if not isinstance(entry, dict):
            raise CallbackInvalid("each message must be an object", field="messages")
        sender = wire.as_text(entry.get("from"))
        content = entry.get("content")
        if not sender or not isinstance(content, dict):
            raise CallbackInvalid("each inbound message needs from and content", field="messages")
        text = content.get("text")
        if text is None:
            if wire.as_text(content.get("ud")) or wire.as_text(content.get("msgtype")) not in (
                "",
                "text",
            ):
                continue  # binary or other non-text content: acknowledged, not stored
            raise CallbackInvalid("a text message needs content.text", field="messages")
        if not isinstance(text, str):
            raise CallbackInvalid("content.text must be text", field="messages")
        received.append(
            model.InboundSms(
                sender=sender,
                recipient=wire.as_text(entry.get("to")),
                text=text,
                provider_id=wire.as_text(entry.get("messageid"))
                or wire.as_text(entry.get("msgid")),
            )
        )
    return received
