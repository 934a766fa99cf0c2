"""Connectel (smsapi.connectel.se), SMS Gateway API v2 (reference of 2020-08-28).

Wire format:
- Send: POST {base}/api/v2/send/ with `authorization` (the token), `sender`,
  `message` and `recipient`, as JSON or as form fields (the account option
  `format = "form"`). One message: `recipient` is the number in international
  digits without '+'. More than one: `recipient` is a list of one-key objects
  `{key: number}` plus `bulk: true`, and the answer lists `{key, recipient,
  requestid}` per recipient under a `bulkid`.
- Delivery reports: pushed to the callback URL configured on the token (not per
  request), as JSON or form `{action: "dlr", requestid, tokenid, statusInt,
  statusStr, sender, recipient}`; pulled with GET {base}/api/v2/delivery/.
- Inbound: JSON (or form) `{from, to, requestid, message}`.
- No balance call is documented.

The reference documents no error answers. What we rely on: a refused request has
no `requestid`; its HTTP status classifies it (401/403 account, 429 and 503 transient,
other 4xx refused, any other 5xx unknown: a proxy's 500, 502 or 504 does not prove
Connectel took nothing, so it is never resent); whatever code and text the body
carries is kept for operators.

Our reference: the bulk form's per-recipient `key` is ours, but the reference shows
it only in the send answer, never in a DLR or the delivery look-up, and the look-up
needs the `requestid`/`bulkid` the lost answer held. So a send whose answer was lost
is found by its DLR's `recipient` (when exactly one unresolved send to that number
fits), and is not polled.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import handlers.wire as wire
from handlers.base import CallbackRequest, Credential, ProviderHandler, WireRequest, WireResponse
from service import model
from service.errors import CallbackInvalid
from service.model import Account, Outcome, RecipientResult, Report, Status


class _Code(NamedTuple):
    name: str
    status: Status
    reserved: bool = False


# Connectel's delivery status codes. The reserved codes map to a non-final status so
# that if Connectel ever starts using one, it can neither finalize a message nor
# (being below every final status) undo one; the report is still kept with its code.
# UNKNOWN is a final failure: Connectel sends nothing after it.
_STATUS_TABLE: dict[int, _Code] = {
    0: _Code("ENROUTE", Status.ENROUTE),
    1: _Code("DELIVRD", Status.DELIVERED),
    2: _Code("REJECTD", Status.REJECTED),
    3: _Code("N/A", Status.ENROUTE, reserved=True),
    4: _Code("N/A", Status.ENROUTE, reserved=True),
    5: _Code("UNDELIV", Status.UNDELIVERED),
    6: _Code("N/A", Status.ENROUTE, reserved=True),
    7: _Code("N/A", Status.ENROUTE, reserved=True),
    8: _Code("EXPIRED", Status.EXPIRED),
    9: _Code("UNKNOWN", Status.UNDELIVERED),
}
# Code 0 is shared by ENROUTE and the bulk queue; only the name tells them apart, and
# a queued message has not reached the operator yet. The send answer says "QUEUED".
_QUEUE_NAMES = frozenset({"QUEUE", "QUEUED"})
_CODE_BY_NAME: dict[str, int] = {
    **{code.name: n for n, code in _STATUS_TABLE.items() if not code.reserved},
    **dict.fromkeys(_QUEUE_NAMES, 0),
}

# Keys under which error answers of HTTP APIs carry a code or a text, best first.
_CODE_KEYS = ("statusInt", "errorCode", "error_code", "code")
_TEXT_KEYS = ("statusStr", "statusDesc", "error", "errorMessage", "message", "detail")


_NOT_IN_ANSWER = "Connectel's answer: no request ID for this recipient"


class ConnectelHandler(ProviderHandler):
    name = "connectel"
    display_name = "Connectel"
    docs_url = "https://www.connectel.se"
    public_base_url = "https://smsapi.connectel.se"
    credentials = (Credential("token", "API token", "Secret key", secret=True),)
    example_account = """\
sender = "IKEA"
priority = 10
options = { format = "json" }          # or "form"; poll = true to poll as well
"""
    max_batch = 1000
    max_text_chars = 1600

    # -- sending -------------------------------------------------------------------

    def send_request(self, account: Account, batch: model.SendBatch) -> WireRequest:
        first = batch.messages[0]
        url = f"{wire.resolve_base(batch.base_url, self.public_base_url)}/api/v2/send/"
        recipient: str | list[dict[str, str]]
        if len(batch.messages) == 1:
            recipient = wire.digits_of(first.to)
        else:
            # The batch index is the key: unique within the request by construction,
            # and short, whatever the message IDs look like.
            recipient = [{str(i): wire.digits_of(m.to)} for i, m in enumerate(batch.messages)]
        fields: dict[str, Any] = {
            "authorization": account.credentials.get("token", ""),
            "sender": first.sender,
            "message": first.text,
            "recipient": recipient,
        }
        if isinstance(recipient, list):
            fields["bulk"] = True
        if account.options.get("format") == "form":
            # Form fields are flat strings, and the reference shows no flat encoding of
            # the bulk recipient list, so it travels as its JSON text and bulk as "true".
            form = [
                (key, value if isinstance(value, str) else json.dumps(value))
                for key, value in fields.items()
            ]
            return WireRequest(
                "POST",
                url,
                headers={
                    "Accept": "application/json",
                    "Content-Type": "application/x-www-form-urlencoded",
                },
                form=form,
            )
        return WireRequest(
            "POST",
            url,
            headers={"Accept": "application/json", "Content-Type": "application/json"},
            json=fields,
        )

    def parse_send_response(
        self, account: Account, batch: model.SendBatch, response: WireResponse
    ) -> list[RecipientResult]:
        code = response.status_code
        body = response.json()
        decided = wire.status_failure(code)
        if decided is not None:
            failure = _failure(decided, response, body)
            return wire.for_each(batch, wire.with_retry_after(failure, response))
        if not 200 <= code < 300 or not isinstance(body, dict):
            return wire.for_each(batch, _failure(Outcome.REFUSED, response, body))
        overall = _send_status(body)
        entries = body.get("recipient")
        if isinstance(entries, list) and any(isinstance(e, dict) for e in entries):
            return _match_bulk(batch, entries, overall, response)
        request_id = wire.as_text(body.get("requestid"))
        if not request_id:
            return wire.for_each(batch, _failure(Outcome.REFUSED, response, body))
        if len(batch.messages) == 1:
            accepted = RecipientResult(Outcome.ACCEPTED, (request_id,), overall)
            return [accepted]
        # A single-recipient answer to a bulk request: it can only be trusted for the
        # first message to the number it names.
        named = wire.as_text(body.get("recipient"))
        index = next((i for i, m in enumerate(batch.messages) if wire.same_number(m.to, named)), -1)
        return [
            RecipientResult(Outcome.ACCEPTED, (request_id,), overall)
            if i == index
            else wire.missing_from_answer(response, _NOT_IN_ANSWER)
            for i in range(len(batch.messages))
        ]

    # -- callbacks -----------------------------------------------------------------

    def parse_dlr(self, account: Account, callback: CallbackRequest) -> list[Report]:
        return [_report(callback.fields())]

    def parse_inbound(self, account: Account, callback: CallbackRequest) -> list[model.InboundSms]:
        fields = callback.fields()
        sender = wire.as_text(fields.get("from"))
        message = fields.get("message")
        if not sender or message is None or isinstance(message, dict | list):
            raise CallbackInvalid("a Connectel inbound SMS needs from and message")
        return [
            model.InboundSms(
                sender=sender,
                recipient=wire.as_text(fields.get("to")),
                text=wire.as_text(message, strip=False),
                provider_id=wire.as_text(fields.get("requestid")),
            )
        ]

    # -- polling -------------------------------------------------------------------

    def poll_request(
        self, account: Account, base_url: str, request_ids: Sequence[str]
    ) -> WireRequest | None:
        """A delivery look-up for the first ID only: Connectel takes one ID per request.

        The ID may be a request ID or a bulk ID; the poller asks once per ID.
        """
        request_id = wire.first_id(request_ids)
        if request_id is None:
            return None
        return WireRequest(
            "GET",
            f"{wire.resolve_base(base_url, self.public_base_url)}/api/v2/delivery/",
            params=(
                ("authorization", account.credentials.get("token", "")),
                ("requestid", request_id),
            ),
            headers={"Accept": "application/json"},
        )

    def poll_reports(
        self, account: Account, request_ids: Sequence[str], body: dict[str, Any]
    ) -> list[Report]:
        entries = body.get("recipient")
        candidates = entries if isinstance(entries, list) else [body]
        reports = []
        for entry in candidates:
            if not isinstance(entry, dict):
                continue
            try:
                reports.append(_report(entry))
            except CallbackInvalid:
                # One unreadable entry must not hide the readable ones.
                continue
        return reports

    # -- balance -------------------------------------------------------------------

    def parse_balance(self, account: Account, response: WireResponse) -> model.Balance:
        raise ValueError("Connectel documents no balance call; balance_request returns None")


# -- sending helpers ---------------------------------------------------------------


def _send_status(answer: Mapping[str, Any]) -> Status:
    """A send answer's status; it may say queued or en route, never anything final."""
    code = wire.as_int(answer.get("statusInt"))
    name = wire.as_text(answer.get("statusStr")).upper()
    if name in _QUEUE_NAMES:
        return Status.SUBMITTED
    if code == 0 or name == "ENROUTE":
        return Status.ENROUTE
    return Status.SUBMITTED


def _match_bulk(
    batch: model.SendBatch, entries: list[Any], overall: Status, response: WireResponse
) -> list[RecipientResult]:
    answers = [e for e in entries if isinstance(e, dict)]
    by_key = {wire.as_text(a.get("key")): a for a in answers if wire.as_text(a.get("key"))}
    ours = {str(i) for i in range(len(batch.messages))}
    used: set[int] = set()
    results = []
    for index, message in enumerate(batch.messages):
        answer = by_key.get(str(index))
        if answer is None or id(answer) in used:
            answer = _by_number(answers, message, used, ours - {str(index)})
        if answer is None:
            results.append(wire.missing_from_answer(response, _NOT_IN_ANSWER))
            continue
        used.add(id(answer))
        results.append(_bulk_result(answer, overall, response))
    return results


def _by_number(
    answers: list[dict[str, Any]], message: model.OutgoingSms, used: set[int], other_keys: set[str]
) -> dict[str, Any] | None:
    """The first unclaimed answer for the message's number not keyed to another message."""
    for answer in answers:
        if id(answer) in used or wire.as_text(answer.get("key")) in other_keys:
            continue
        if wire.same_number(message.to, wire.as_text(answer.get("recipient"))):
            return answer
    return None


def _bulk_result(
    answer: Mapping[str, Any], overall: Status, response: WireResponse
) -> RecipientResult:
    request_id = wire.as_text(answer.get("requestid"))
    if not request_id:
        code, text = _error_details(answer)
        return RecipientResult(
            Outcome.REFUSED,
            error_code=code or str(response.status_code),
            error_text=text or "Connectel gave this recipient no request ID",
        )
    has_own_status = "statusInt" in answer or "statusStr" in answer
    status = _send_status(answer) if has_own_status else overall
    return RecipientResult(Outcome.ACCEPTED, (request_id,), status)


def _failure(outcome: Outcome, response: WireResponse, body: Any) -> RecipientResult:
    code, text = _error_details(body) if isinstance(body, dict) else ("", "")
    if 200 <= response.status_code < 300 and isinstance(body, dict):
        # A success status without a request ID is still a refusal, and the body's
        # fields (if any) may describe a success, so say what is missing first.
        text = "no request ID in Connectel's answer" + (f": {text}" if text else "")
    elif not text:
        text = wire.describe_unreadable("Connectel", response, body)
    return RecipientResult(outcome, error_code=code or str(response.status_code), error_text=text)


def _error_details(body: Mapping[str, Any]) -> tuple[str, str]:
    """The provider's own error code and text, wherever in the body it put them."""
    sources: list[Mapping[str, Any]] = [body]
    nested = body.get("error")
    if isinstance(nested, dict):
        sources.insert(0, nested)
    code = text = ""
    for source in sources:
        code = code or next((v for v in (wire.as_text(source.get(k)) for k in _CODE_KEYS) if v), "")
        if not text:
            texts = [
                wire.as_text(source.get(k))
                for k in _TEXT_KEYS
                if not isinstance(source.get(k), dict)
            ]
            text = ": ".join(dict.fromkeys(t for t in texts if t))
    return code, text


# -- report helpers ----------------------------------------------------------------


def _report(fields: Mapping[str, Any]) -> Report:
    request_id = wire.as_text(fields.get("requestid"))
    if not request_id:
        raise CallbackInvalid("a Connectel delivery report needs a requestid")
    raw_int, raw_str = fields.get("statusInt"), fields.get("statusStr")
    given_name = "" if wire.as_int(raw_str) is not None else wire.as_text(raw_str).upper()
    if not wire.is_blank(raw_int):
        code = wire.as_int(raw_int)
        if code is None:
            raise CallbackInvalid("statusInt must be an integer", field="statusInt")
    elif not wire.is_blank(raw_str):
        # The reference's own example sends statusStr as the code.
        code = wire.as_int(raw_str)
        if code is None:
            code = _CODE_BY_NAME.get(given_name)
        if code is None:
            raise CallbackInvalid("statusStr is not a Connectel status", field="statusStr")
    else:
        raise CallbackInvalid("a Connectel delivery report needs statusInt or statusStr")
    status, text = _status_of(code, given_name)
    description = wire.as_text(fields.get("statusDesc"))
    if description and description.upper() != text.upper():
        text = f"{text}: {description}"
    return Report(
        request_id=request_id,
        status=status,
        recipient=wire.as_text(fields.get("recipient")),
        error_code=str(code),
        error_text=text,
    )


def _status_of(code: int, name: str) -> tuple[Status, str]:
    entry = _STATUS_TABLE.get(code)
    suffix = f" ({name})" if name and name != "N/A" else ""
    if entry is None:
        return Status.ENROUTE, f"unknown status code {code}{suffix}"
    if entry.reserved:
        return Status.ENROUTE, f"reserved status code {code}{suffix}"
    if code == 0 and name in _QUEUE_NAMES:
        return Status.SUBMITTED, name
    return entry.status, name or entry.name
