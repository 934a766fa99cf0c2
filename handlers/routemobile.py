"""Route Mobile SMSPLUS, Bulk HTTP API (specification v1.0.1, January 2018).

Wire format:
- Send: GET (or POST as a form) {base}/bulksms/bulksms with `username`, `password`,
  `type`, `dlr`, `destination` (comma-separated numbers, digits without '+'),
  `source` (the sender ID) and `message`. Types: 0 plain text (GSM 03.38), 1 flash,
  2 Unicode, 6 Unicode flash; Unicode text travels as the hex of its UTF-16BE code
  units ("Hello" -> "00480065006C006C006F").
- Answer: plain text, one `code|number|message-id` per destination, comma separated:
  `1701|919xxxxxxxxx|a1b2...,1706|23405`. Older servers write `1701|number:id`. A
  whole-request error is a bare code (`1703`); running out of credit mid-batch ends
  the answer with `1025|<that destination>` and says nothing of the later ones.
- Delivery reports: pushed to the URL Route Mobile configures on the account (not per
  request), as a GET query or a POST form: `sSender, sMobileNo, sStatus, sMessageId,
  dtSubmit, dtDone, iCostPerSms, iCharge, iMCCMNC, iErrCode, sTagName, sUdf1, sUdf2`.
  Some accounts send `ErrCode` for `iErrCode`, and field names drift in case.
- Balance: GET {base}/CreditCheck/checkcredits?username=&password= answers
  `BALANCE:1234.56`, or `PERMISSION DENIED` for wrong credentials.
- No inbound SMS callback and no status look-up are documented.
- No client reference is documented for the send (the DLR's `sUdf1`/`sUdf2`/`sTagName`
  are not among the send's parameters), so a send whose answer was lost is found by
  its DLR's `sMobileNo` when exactly one unresolved send to that number fits.
- Retried: HTTP 429 and 503, and the codes `CODES` marks TRANSIENT (Route Mobile's own
  answer). Any other 5xx, and 1715 (response timeout), is an unknown outcome: never
  resent.

The password travels in the URL (or form), so it is a secret field: smsgw scrubs it
from every stored response and error text.

Account options read here:
- `message_type`: "text" (default), "flash" or "unicode". Text and flash switch to
  their Unicode types (2, 6) by themselves when the text is not GSM-7; "unicode"
  always sends type 2. The numeric types 0, 1, 2, 6 are accepted as well. Anything
  else is read as "text".
- `dlr`: ask for delivery reports, 1 (default) or 0 (also true/false, yes/no).
- `method`: "GET" (default, as the specification shows) or "POST" (a form body).
- `entity_id`, `template_id`: India DLT registration, sent as `entityid` and `tempid`
  when set (Route Mobile's Indian routes refuse unregistered traffic).

Public host: https://api.rmlconnect.net, Route Mobile's international HTTPS endpoint
(the specification's `http://<server>:8080` is account-specific; set the account's
base_url to it, e.g. http://sms6.rmlconnect.net:8080, when Route Mobile assigns one).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import handlers.wire as wire
from handlers.base import LOGIN, CallbackRequest, ProviderHandler, WireRequest, WireResponse
from service import model
from service.errors import CallbackInvalid
from service.model import Account, Outcome, RecipientResult, Report, Status

SEND_PATH = "/bulksms/bulksms"
BALANCE_PATH = "/CreditCheck/checkcredits"
SUCCESS = "1701"


_Code = wire.ErrorMeaning


# Every answer code of the Bulk HTTP API. 1701-1710, 1025, 1715, 1032 and 1028 are the
# specification's; 1026 (the reseller's credit) and 1033 (DLT sender/template mismatch)
# come from Route Mobile's answers seen in client code.
#
# smsgw always sends every parameter and validates number and text itself, so a
# missing parameter (1702) is a blank username, password or sender of the account;
# the type and the dlr flag come from account options too (1704, 1708). All three are
# account errors: another account may send the message as it is.
# 1715 means Route Mobile timed out after taking the request: whether the message went
# out is unknown and the specification says not to resubmit it.
CODES: dict[str, _Code] = {
    "1702": _Code(Outcome.ACCOUNT_ERROR, "invalid URL: a parameter was missing or blank"),
    "1703": _Code(Outcome.ACCOUNT_ERROR, "invalid username or password"),
    "1704": _Code(Outcome.ACCOUNT_ERROR, "invalid value in the type field"),
    "1705": _Code(Outcome.REFUSED, "invalid message"),
    "1706": _Code(Outcome.REFUSED, "invalid destination"),
    "1707": _Code(Outcome.SENDER_REJECTED, "invalid source (sender)"),
    "1708": _Code(Outcome.ACCOUNT_ERROR, "invalid value in the dlr field"),
    "1709": _Code(Outcome.ACCOUNT_ERROR, "user validation failed"),
    "1710": _Code(Outcome.TRANSIENT, "internal error"),
    "1025": _Code(Outcome.ACCOUNT_ERROR, "insufficient credit"),
    "1026": _Code(Outcome.ACCOUNT_ERROR, "insufficient credit (reseller)"),
    "1715": _Code(Outcome.UNKNOWN, "response timeout: whether the message went out is unknown"),
    "1032": _Code(Outcome.REFUSED, "DND reject: the destination is on the do-not-disturb list"),
    "1033": _Code(Outcome.SENDER_REJECTED, "sender and template mismatch (DLT)"),
    "1028": _Code(Outcome.REFUSED, "spam message content"),
}
# Codes that stop Route Mobile from working through the rest of a batch: messages the
# answer does not mention share the fate of the code that cut it short.
_CUTS_SHORT = frozenset({Outcome.ACCOUNT_ERROR, Outcome.TRANSIENT})

# sStatus values: the SMPP receipt states Route Mobile relays, plus its own ACKED (the
# operator acknowledged the submission), ACCEPTED and DND (rejected by the operator's
# do-not-disturb registry). Spelled-out variants are read too.
DLR_STATUSES: dict[str, Status] = {
    "ACKED": Status.ENROUTE,
    "ACCEPTD": Status.ENROUTE,
    "ACCEPTED": Status.ENROUTE,
    "ENROUTE": Status.ENROUTE,
    "DELIVRD": Status.DELIVERED,
    "DELIVERED": Status.DELIVERED,
    "UNDELIV": Status.UNDELIVERED,
    "UNDELIVERED": Status.UNDELIVERED,
    "DELETED": Status.UNDELIVERED,
    "UNKNOWN": Status.UNDELIVERED,
    "EXPIRED": Status.EXPIRED,
    "REJECTD": Status.REJECTED,
    "REJECTED": Status.REJECTED,
    "DND": Status.REJECTED,
    "FAILED": Status.FAILED,
}

# message_type option -> (type for GSM-7 text, type for UCS-2 text)
_TYPES: dict[str, tuple[str, str]] = {
    "text": ("0", "2"),
    "0": ("0", "2"),
    "flash": ("1", "6"),
    "1": ("1", "6"),
    "unicode": ("2", "2"),
    "2": ("2", "2"),
    "6": ("6", "6"),
}
HEX_TYPES = frozenset({"2", "6"})

_CODE = re.compile(r"[0-9]{3,6}")


class RouteMobileHandler(ProviderHandler):
    """One Bulk HTTP request per batch; each destination gets its own code and message
    ID, and reports arrive on the URL configured with Route Mobile, not per request."""

    name = "routemobile"
    display_name = "Route Mobile"
    docs_url = "https://www.routemobile.com"
    public_base_url = "https://api.rmlconnect.net"
    credentials = LOGIN
    example_account = """\
sender = "SMSGW"
priority = 20
base_url = "https://rslr.connectbind.com"  # the host your Route Mobile account was given
"""
    # The specification sets no limit on comma-separated destinations, but a GET
    # request line has to stay under the 8 KB servers commonly accept: 100 numbers
    # take at most 1.8 KB and leave room for a 1000-character Unicode text (4 KB hex).
    max_batch = 100
    max_text_chars = 1000

    # -- sending -------------------------------------------------------------------

    def send_request(self, account: Account, batch: model.SendBatch) -> WireRequest:
        first = batch.messages[0]
        kind = message_type(account.options, first.encoding)
        text = unicode_hex(first.text) if kind in HEX_TYPES else first.text
        fields = [
            ("username", account.credentials.get("username", "")),
            ("password", account.credentials.get("password", "")),
            ("type", kind),
            ("dlr", "1" if _wants_dlr(account.options) else "0"),
            ("destination", ",".join(wire.digits_of(m.to) for m in batch.messages)),
            ("source", first.sender),
            ("message", text),
        ]
        for option, parameter in (("entity_id", "entityid"), ("template_id", "tempid")):
            value = wire.as_text(account.options.get(option))
            if value:
                fields.append((parameter, value))
        url = f"{wire.resolve_base(batch.base_url, self.public_base_url)}{SEND_PATH}"
        if str(account.options.get("method", "GET")).strip().upper() == "POST":
            return WireRequest(
                "POST",
                url,
                headers={"Content-Type": "application/x-www-form-urlencoded"},
                form=fields,
            )
        return WireRequest("GET", url, params=fields)

    def parse_send_response(
        self, account: Account, batch: model.SendBatch, response: WireResponse
    ) -> list[RecipientResult]:
        status = response.status_code
        server = wire.server_failure(status)
        if server is not None:
            failure = wire.with_retry_after(
                RecipientResult(
                    server,
                    error_code=str(status),
                    error_text=_describe(response, "busy or failing"),
                ),
                response,
            )
            return [failure for _ in batch.messages]
        entries = parse_answer(response.text)
        if not 200 <= status < 300:
            # Only a bare error code is trusted on an HTTP error; anything else is the
            # HTTP status speaking.
            if len(entries) == 1 and not entries[0].number and entries[0].code != SUCCESS:
                return [_result(entries[0]) for _ in batch.messages]
            outcome = Outcome.ACCOUNT_ERROR if status in (401, 403) else Outcome.REFUSED
            failure = RecipientResult(
                outcome, error_code=str(status), error_text=_describe(response, "an error")
            )
            return [failure for _ in batch.messages]
        if not entries:
            failure = RecipientResult(
                Outcome.REFUSED,
                error_code=str(status),
                error_text=_describe(response, "no answer code"),
            )
            return [failure for _ in batch.messages]
        return _match(batch.messages, entries)

    # -- callbacks -----------------------------------------------------------------

    def parse_dlr(self, account: Account, callback: CallbackRequest) -> list[Report]:
        fields = _folded(callback.fields())
        request_id = _scalar(fields, "sMessageId")
        if not request_id:
            raise CallbackInvalid("a Route Mobile delivery report needs sMessageId")
        given = _scalar(fields, "sStatus")
        if not given:
            raise CallbackInvalid("a Route Mobile delivery report needs sStatus")
        status = DLR_STATUSES.get(given.upper())
        if status is None:
            raise CallbackInvalid(f"sStatus {given!r} is not a Route Mobile status")
        code = _scalar(fields, "iErrCode") or _scalar(fields, "ErrCode")
        if code.upper() == "NULL":
            code = ""
        text = given.upper()
        detail = _scalar(fields, "sError")
        if detail and detail.upper() != text:
            text = f"{text}: {detail}"
        return [
            Report(
                request_id=request_id,
                status=status,
                recipient=_scalar(fields, "sMobileNo"),
                error_code=code,
                error_text=text,
            )
        ]

    def parse_inbound(self, account: Account, callback: CallbackRequest) -> list[model.InboundSms]:
        raise CallbackInvalid(
            "Route Mobile's Bulk HTTP API has no inbound SMS callback; "
            "nothing should post to this account's inbound URL"
        )

    # -- balance -------------------------------------------------------------------

    def balance_request(self, account: Account, base_url: str) -> WireRequest | None:
        return WireRequest(
            "GET",
            f"{wire.resolve_base(base_url, self.public_base_url)}{BALANCE_PATH}",
            params=(
                ("username", account.credentials.get("username", "")),
                ("password", account.credentials.get("password", "")),
            ),
        )

    def parse_balance(self, account: Account, response: WireResponse) -> model.Balance:
        text = response.text.strip()
        if not 200 <= response.status_code < 300:
            raise ValueError(f"Route Mobile answered HTTP {response.status_code}")
        if "PERMISSION DENIED" in text.upper():
            raise ValueError("Route Mobile denied the credit check: wrong username or password")
        value = text.rsplit(":", 1)[-1].strip()
        amount = wire.as_float(value)
        if amount is None:
            raise ValueError(f"unreadable credit check answer: {wire.snippet(text)!r}")
        return model.Balance(amount)


# -- the send answer ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Entry:
    """One `code|number|id` item of a send answer; number and id may be empty."""

    code: str
    number: str = ""
    message_id: str = ""


def parse_answer(body: str) -> list[Entry]:
    """The answer's items, in order; items that are not `code[|number[|id]]` are dropped."""
    entries = []
    for item in body.split(","):
        parts = [part.strip() for part in item.strip().split("|")]
        if not _CODE.fullmatch(parts[0]):
            continue
        number = message_id = ""
        if len(parts) >= 3:
            number, message_id = parts[1], parts[2]
        elif len(parts) == 2:
            number, _, message_id = parts[1].partition(":")
        if not wire.digits_of(number):
            number = ""
        entries.append(Entry(parts[0], number.strip(), message_id.strip()))
    return entries


def _match(messages: Sequence[model.OutgoingSms], entries: list[Entry]) -> list[RecipientResult]:
    """Each message's result, found by its number in the answer.

    Exact numbers are matched first (in order, so a number sent twice gets its answers
    in order), then numbers the answer wrote without the country code or with a
    trunk zero, then a last lone pair. What stays unmatched gets the bare code of the
    answer, or the code that cut the batch short, or is refused as missing.
    """
    numbered = [e for e in entries if e.number]
    claimed: dict[int, Entry] = {}
    free = list(range(len(numbered)))
    for same in (wire.same_number, wire.same_subscriber):
        for index, message in enumerate(messages):
            if index in claimed:
                continue
            for k in free:
                if same(message.to, numbered[k].number):
                    claimed[index] = numbered[k]
                    free.remove(k)
                    break
    unclaimed = [i for i in range(len(messages)) if i not in claimed]
    if len(unclaimed) == 1 and len(free) == 1:
        # One number left on each side: the answer rewrote it beyond recognition, unless
        # the leftover names another message's number (a repeated answer, not this one).
        leftover = numbered[free[0]].number
        if not any(
            wire.same_number(m.to, leftover) or wire.same_subscriber(m.to, leftover)
            for m in messages
        ):
            claimed[unclaimed[0]] = numbered[free[0]]
    fallback = _fallback(entries)
    results = []
    for index in range(len(messages)):
        entry = claimed.get(index)
        if entry is not None:
            results.append(_result(entry))
        elif fallback is not None:
            results.append(_result(fallback))
        else:
            results.append(
                RecipientResult(
                    Outcome.REFUSED,
                    error_code="missing",
                    error_text="missing from Route Mobile's answer: no code for this number",
                )
            )
    return results


def _fallback(entries: list[Entry]) -> Entry | None:
    bare = next((e for e in entries if not e.number), None)
    if bare is not None:
        return bare
    last = entries[-1]
    known = CODES.get(last.code)
    if known is not None and known.outcome in _CUTS_SHORT:
        return Entry(last.code)
    return None


def _result(entry: Entry) -> RecipientResult:
    if entry.code == SUCCESS:
        if entry.message_id:
            return RecipientResult(Outcome.ACCEPTED, (entry.message_id,), Status.SUBMITTED)
        return RecipientResult(
            Outcome.REFUSED,
            error_code=SUCCESS,
            error_text="Route Mobile answered 1701 (success) without a message ID",
        )
    known = CODES.get(entry.code)
    if known is None:
        return RecipientResult(
            Outcome.REFUSED,
            error_code=entry.code,
            error_text=f"unknown Route Mobile answer code {entry.code}",
        )
    return RecipientResult(known.outcome, error_code=entry.code, error_text=known.text)


# -- helpers -----------------------------------------------------------------------


def message_type(options: Mapping[str, Any], encoding: str) -> str:
    """The `type` parameter for the account's message_type and the text's encoding."""
    wanted = str(options.get("message_type", "text")).strip().lower()
    gsm, ucs2 = _TYPES.get(wanted, _TYPES["text"])
    return ucs2 if encoding.upper().replace("-", "") == "UCS2" else gsm


def unicode_hex(text: str) -> str:
    """Text as Route Mobile's Unicode types want it: UTF-16BE code units in hex."""
    return text.encode("utf-16-be").hex().upper()


def _wants_dlr(options: Mapping[str, Any]) -> bool:
    value = options.get("dlr", 1)
    if isinstance(value, str):
        return value.strip().lower() not in ("0", "false", "no", "off", "")
    return bool(value)


def _describe(response: WireResponse, what: str) -> str:
    shown = wire.snippet(response.text)
    head = f"Route Mobile answered {what} (HTTP {response.status_code})"
    return f"{head}: {shown}" if shown else f"{head} with an empty body"


def _folded(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Field names in lower case; the first spelling of a name wins."""
    folded: dict[str, Any] = {}
    for key, value in fields.items():
        folded.setdefault(str(key).strip().lower(), value)
    return folded


def _scalar(fields: Mapping[str, Any], name: str) -> str:
    """The field `name` (any case) of a folded mapping as text; containers are invalid."""
    value = fields.get(name.lower())
    if isinstance(value, dict | list | bool):
        raise CallbackInvalid(f"{name} must be text or a number", field=name)
    return wire.as_text(value)
