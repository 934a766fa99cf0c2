"""Infobip SMS API (api.infobip.com and every account's personal base URL).

Every Infobip account has its own base URL, shown on the portal's homepage as
`xxxxx.api.infobip.com`; the shared `https://api.infobip.com` works too, but the
personal one is what Infobip asks integrators to use. Put it in the account's
`base_url`: the documented paths below follow it unchanged.

Wire format:
- Authentication: header `Authorization: App <api_key>` on every call.
- Send: POST {base}/sms/2/text/advanced, JSON `{"messages": [{"destinations":
  [{"to"}], "from", "text", "notifyUrl", "notifyContentType"}]}`. A batch is one
  message entry with one destination per recipient, numbers in international digits
  without '+'. The answer is `{"bulkId", "messages": [{"to", "messageId", "status":
  {groupId, groupName, id, name, description}}]}`, one entry per destination in
  request order; the entries map back by position and number. A destination Infobip
  will not take has a status in the REJECTED group (rarely UNDELIVERABLE or EXPIRED)
  instead of PENDING. Infobip generates the messageIds: a destination may carry a
  client-chosen one, but smsgw resends a message (retries, the fallback sender) and a
  repeated messageId is refused as REJECTED_DUPLICATE_MESSAGE_ID. (Infobip lists
  /sms/3/messages as this endpoint's successor; /sms/2/text/advanced remains
  documented and served.)
- Errors: HTTP 400/401/403/404/429/5xx with the legacy body `{"requestError":
  {"serviceException": {"messageId": "BAD_REQUEST", "text", "validationErrors"?}}}`
  or the platform's newer `{"errorCode": "E400", "description", "action",
  "violations": [{"property", "violation"}]}`; both are read.
- Delivery reports: pushed to the `notifyUrl` given per message, POST JSON
  `{"results": [{"bulkId", "messageId", "to", "sentAt", "doneAt", "smsCount" (v3:
  "messageCount"), "price", "status": {...}, "error": {groupId, groupName, id, name,
  description, permanent}, "callbackData"?}]}`, up to 100 results per request.
- Inbound SMS: pushed to the URL configured on the number, POST JSON `{"results":
  [{"messageId", "from", "to", "text", "cleanText", "keyword", "receivedAt",
  "smsCount", "price", "callbackData"}], "messageCount", "pendingMessageCount"}`.
- Polling: GET {base}/sms/3/logs?messageId=a,b,c (comma-separated, at most 2048
  characters, 48 hours of history, 120 calls a minute). The logs are a look-up that
  can be repeated; the reports endpoints (/sms/1/reports, /sms/3/reports) instead
  hand every report out once, to whoever asks first, and take one ID per call.
- Balance: GET {base}/account/1/balance -> `{"balance": 47.79, "currency": "EUR"}`.
- Infobip has no validate-only send, so test mode is smsgw's dry run.

Our reference: `callbackData` (per message entry, so only on single-recipient
requests) is echoed in every delivery report and becomes the report's `reference`,
which finds a send whose answer was lost; a batch's reports fall back on the
recipient. Our own `messageId` per destination would also be echoed, and would let
/sms/3/logs be polled for such a send, but the fallback sender resends after a
REJECTED answer and a reused messageId is refused, so it is not used.

Which answers prove a send was not taken (and are retried): HTTP 429 and 503, and
TOO_MANY_REQUESTS/E429 in any answer. Any other 5xx (GENERAL_ERROR/E500 included) is
an unknown outcome: never resent.

Status mapping: see `handlers.infobip_status`.

Account options:
- `intermediate_report` (default false): ask for PENDING reports as well.
- `validity_period`: minutes Infobip keeps trying (1..2880, Infobip's maximum). A
  message's own validity (`valid_for` / `expires_at`) takes its place: the whole minutes
  that remain of it when it is sent.
- `operator_delivery_final` (default false): count DELIVERED_TO_OPERATOR as
  delivered, for routes whose operators never report delivery to the handset.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import handlers.wire as wire
from handlers.base import API_KEY, CallbackRequest, ProviderHandler, WireRequest, WireResponse
from handlers.infobip_status import Resolved, Unreadable, number_of, report_of, resolve
from service import model
from service.errors import CallbackInvalid
from service.model import Account, Outcome, RecipientResult, Report, Status

SEND_PATH = "/sms/2/text/advanced"
LOGS_PATH = "/sms/3/logs"
BALANCE_PATH = "/account/1/balance"
MAX_VALIDITY_MINUTES = 2880
# The logs endpoint takes comma-separated IDs up to this many characters.
MAX_POLL_ID_CHARS = 2048
MAX_POLL_IDS = 1000


# Request-level error codes: the legacy serviceException messageId and the newer
# errorCode. Anything else is classified by the HTTP status.
_ERROR_CODES: dict[str, Outcome] = {
    "BAD_REQUEST": Outcome.REFUSED,
    "E400": Outcome.REFUSED,
    "INVALID_ARGUMENT": Outcome.REFUSED,
    "UNAUTHORIZED": Outcome.ACCOUNT_ERROR,
    "E401": Outcome.ACCOUNT_ERROR,
    "FORBIDDEN": Outcome.ACCOUNT_ERROR,
    "E403": Outcome.ACCOUNT_ERROR,
    "NOT_FOUND": Outcome.ACCOUNT_ERROR,
    "E404": Outcome.ACCOUNT_ERROR,
    "TOO_MANY_REQUESTS": Outcome.TRANSIENT,
    "E429": Outcome.TRANSIENT,
    "GENERAL_ERROR": Outcome.TRANSIENT,
    "E500": Outcome.TRANSIENT,
}
# Validation errors on these request properties are about the sender ID.
_SENDER_PROPERTY = re.compile(r"(^|[.\]])(from|sender)$")

_PLACEHOLDER = re.compile(r"%([0-9]{1,4})")
_TRUE = frozenset({"1", "true", "yes", "on"})


_NOT_IN_ANSWER = "Infobip's answer: no messageId for this recipient"


class InfobipHandler(ProviderHandler):
    name = "infobip"
    display_name = "Infobip"
    docs_url = "https://www.infobip.com/docs/api"
    public_base_url = "https://api.infobip.com"
    credentials = API_KEY
    example_account = """\
sender = "InfoSMS"
fallback_sender = "SMSGW"
priority = 50
base_url = "https://xxxxx.api.infobip.com"  # your personal Infobip base URL
signup_url = "https://www.infobip.com/signup"
"""
    # Infobip documents no cap on destinations per request; 1000 matches the most
    # the SMS API hands back in one reports or logs call and keeps a request small.
    max_batch = 1000
    # Infobip refuses texts over 25 parts (REJECTED_MESSAGE_TOO_LONG); 25 UCS-2 parts
    # hold 1675 characters, and 1600 leaves room for characters that count double.
    max_text_chars = 1600

    # -- sending -------------------------------------------------------------------

    def send_request(self, account: Account, batch: model.SendBatch) -> WireRequest:
        first = batch.messages[0]
        entry: dict[str, Any] = {
            "destinations": [{"to": wire.digits_of(m.to)} for m in batch.messages]
        }
        if first.sender:
            entry["from"] = first.sender  # without it Infobip uses the account's default
        entry["text"] = first.text
        if batch.dlr_url:
            entry["notifyUrl"] = batch.dlr_url
            entry["notifyContentType"] = "application/json"
        if len(batch.messages) == 1:
            entry["callbackData"] = first.message_id  # echoed in its reports
        if _flag(account.options, "intermediate_report", default=False):
            entry["intermediateReport"] = True
        minutes = wire.validity(
            account.options.get("validity_period"), first.validity, 60, MAX_VALIDITY_MINUTES
        )
        if minutes is not None:
            entry["validityPeriod"] = minutes
        return wire.json_api_post(
            f"{wire.resolve_base(batch.base_url, self.public_base_url)}{SEND_PATH}",
            _authorization(account),
            {"messages": [entry]},
        )

    def parse_send_response(
        self, account: Account, batch: model.SendBatch, response: WireResponse
    ) -> list[RecipientResult]:
        body = response.json()
        if not 200 <= response.status_code < 300 or not isinstance(body, dict):
            return wire.for_each(batch, _failure(response, body))
        if _is_error_body(body):
            return wire.for_each(batch, _failure(response, body))
        entries = body.get("messages")
        answers = [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []
        if not answers:
            return wire.for_each(batch, _failure(response, body))
        return _match(batch, answers, response)

    # -- callbacks -----------------------------------------------------------------

    def parse_dlr(self, account: Account, callback: CallbackRequest) -> list[Report]:
        results = _results(callback, "delivery report")
        final_at_operator = _flag(account.options, "operator_delivery_final", default=False)
        reports = []
        for index, entry in enumerate(results):
            try:
                reports.append(report_of(entry, final_at_operator))
            except Unreadable as exc:
                raise CallbackInvalid(f"results[{index}]: {exc}", field="results") from exc
        return reports

    def parse_inbound(self, account: Account, callback: CallbackRequest) -> list[model.InboundSms]:
        results = _results(callback, "inbound message")
        messages = []
        for index, entry in enumerate(results):
            sender = wire.as_text(entry.get("from"))
            text = entry.get("text")
            if not sender or not isinstance(text, str):
                raise CallbackInvalid(
                    f"results[{index}]: an Infobip inbound SMS needs from and text",
                    field="results",
                )
            messages.append(
                model.InboundSms(
                    sender=sender,
                    recipient=wire.as_text(entry.get("to")),
                    text=text,
                    provider_id=wire.as_text(entry.get("messageId")),
                )
            )
        return messages

    # -- polling -------------------------------------------------------------------

    def poll_request(
        self, account: Account, base_url: str, request_ids: Sequence[str]
    ) -> WireRequest | None:
        """A logs look-up for as many of the IDs as fit in one call (2048 characters).

        The poller asks again for the IDs that did not fit.
        """
        chosen: list[str] = []
        length = -1
        for request_id in request_ids:
            request_id = request_id.strip()
            if not request_id or "," in request_id:
                continue
            if chosen and (
                length + 1 + len(request_id) > MAX_POLL_ID_CHARS or len(chosen) >= MAX_POLL_IDS
            ):
                break
            chosen.append(request_id)
            length += 1 + len(request_id)
        if not chosen:
            return None
        return wire.json_api_get(
            f"{wire.resolve_base(base_url, self.public_base_url)}{LOGS_PATH}",
            _authorization(account),
            params=(("messageId", ",".join(chosen)), ("limit", str(len(chosen)))),
        )

    def poll_reports(
        self, account: Account, request_ids: Sequence[str], body: dict[str, Any]
    ) -> list[Report]:
        results = body.get("results")
        if not isinstance(results, list):
            return []
        final_at_operator = _flag(account.options, "operator_delivery_final", default=False)
        reports = []
        for entry in results:
            try:
                reports.append(report_of(entry, final_at_operator))
            except Unreadable:
                continue  # one unreadable log must not hide the readable ones
        return reports

    # -- balance -------------------------------------------------------------------

    def balance_request(self, account: Account, base_url: str) -> WireRequest | None:
        base = wire.resolve_base(base_url, self.public_base_url)
        return wire.json_api_get(f"{base}{BALANCE_PATH}", _authorization(account))

    def parse_balance(self, account: Account, response: WireResponse) -> model.Balance:
        body = response.json()
        if not 200 <= response.status_code < 300:
            code, text, _ = _error_details(body) if isinstance(body, dict) else ("", "", [])
            detail = ": ".join(p for p in (code, text) if p) or wire.describe_unreadable(
                "Infobip", response, body
            )
            raise ValueError(
                f"Infobip answered the balance call with HTTP {response.status_code} ({detail})"
            )
        if not isinstance(body, dict):
            raise ValueError(wire.describe_unreadable("Infobip", response, body))
        amount = wire.as_float(body.get("balance"))
        if amount is None:
            raise ValueError("Infobip's balance answer has no numeric balance")
        return model.Balance(amount=amount, currency=wire.as_text(body.get("currency")))


# -- sending helpers ---------------------------------------------------------------


def _flag(options: Mapping[str, Any], key: str, *, default: bool) -> bool:
    value = options.get(key)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip():
        return value.strip().lower() in _TRUE
    if isinstance(value, int | float):
        return bool(value)
    return default


def _match(
    batch: model.SendBatch, answers: list[dict[str, Any]], response: WireResponse
) -> list[RecipientResult]:
    """Each message's answer: at its own position when the numbers agree, else by number.

    Infobip answers one entry per destination in request order, so position tells
    apart the same number sent twice; the number is the fallback for any other shape.
    """
    same_length = len(answers) == len(batch.messages)
    used: set[int] = set()
    results = []
    for index, message in enumerate(batch.messages):
        answer: dict[str, Any] | None = None
        if same_length and wire.same_number(message.to, number_of(answers[index])):
            answer = answers[index]
        if answer is None or id(answer) in used:
            answer = next(
                (
                    a
                    for a in answers
                    if id(a) not in used and wire.same_number(message.to, number_of(a))
                ),
                None,
            )
        if (
            answer is None
            and same_length
            and not number_of(answers[index])
            and id(answers[index]) not in used
        ):
            answer = answers[index]  # an entry that names no number keeps its place
        if answer is None:
            results.append(wire.missing_from_answer(response, _NOT_IN_ANSWER))
            continue
        used.add(id(answer))
        results.append(_answer_result(answer))
    return results


def _answer_result(answer: Mapping[str, Any]) -> RecipientResult:
    message_id = wire.as_text(answer.get("messageId"))
    raw_status = answer.get("status")
    resolved: Resolved | None = None
    if isinstance(raw_status, dict):
        try:
            resolved = resolve(raw_status, final_at_operator=False)
        except Unreadable:
            resolved = None
    if resolved is not None and resolved.submission is not None:
        return RecipientResult(
            resolved.submission, error_code=resolved.code, error_text=resolved.text
        )
    if not message_id:
        code, text = (resolved.code, resolved.text) if resolved else ("", "")
        return RecipientResult(
            Outcome.REFUSED,
            error_code=code or "no_message_id",
            error_text="no messageId in Infobip's answer for this recipient"
            + (f": {text}" if text else ""),
        )
    taken = Status.SUBMITTED
    if resolved is not None and resolved.delivery in (Status.ENROUTE, Status.DELIVERED):
        taken = Status.ENROUTE  # a send answer is never final, whatever it says
    return RecipientResult(Outcome.ACCEPTED, (message_id,), taken)


def _is_error_body(body: Mapping[str, Any]) -> bool:
    return "requestError" in body or ("errorCode" in body and "messages" not in body)


def _failure(response: WireResponse, body: Any) -> RecipientResult:
    status = response.status_code
    code, text, properties = _error_details(body) if isinstance(body, dict) else ("", "", [])
    decided = wire.status_failure(status)
    if decided is not None:
        outcome = decided
    elif code.upper() in _ERROR_CODES:
        outcome = _ERROR_CODES[code.upper()]
    elif status == 404:
        outcome = Outcome.ACCOUNT_ERROR  # the base URL is wrong for this account
    else:
        outcome = Outcome.REFUSED
    if outcome is Outcome.REFUSED and any(_SENDER_PROPERTY.search(p) for p in properties):
        outcome = Outcome.SENDER_REJECTED
    if 200 <= status < 300 and isinstance(body, dict) and not code:
        text = "no messages in Infobip's answer" + (f": {text}" if text else "")
    elif not text:
        text = wire.describe_unreadable("Infobip", response, body)
    result = RecipientResult(outcome, error_code=code or str(status), error_text=text)
    if outcome is Outcome.TRANSIENT:
        result = replace(result, retry_after=wire.retry_after(response.headers))
    return result


def _error_details(body: Mapping[str, Any]) -> tuple[str, str, list[str]]:
    """(code, text, offending properties) of either Infobip error shape."""
    request_error = body.get("requestError")
    if isinstance(request_error, dict):
        exception = request_error.get("serviceException")
        if not isinstance(exception, dict):
            exception = request_error.get("policyException")
        if isinstance(exception, dict):
            return _legacy_error(exception)
        return "", "", []
    code = wire.as_text(body.get("errorCode"))
    description = wire.as_text(body.get("description"))
    properties: list[str] = []
    details: list[str] = []
    violations = body.get("violations")
    if isinstance(violations, list):
        for violation in violations:
            if not isinstance(violation, dict):
                continue
            prop, what = (
                wire.as_text(violation.get("property")),
                wire.as_text(violation.get("violation")),
            )
            if prop:
                properties.append(prop)
            if what:
                details.append(f"{prop}: {what}" if prop else what)
    text = description + (f" ({'; '.join(details)})" if details else "")
    action = wire.as_text(body.get("action"))
    if action:
        text = f"{text}. {action}" if text else action
    return code, text, properties


def _legacy_error(exception: Mapping[str, Any]) -> tuple[str, str, list[str]]:
    code = wire.as_text(exception.get("messageId"))
    text = wire.as_text(exception.get("text"))
    variables = exception.get("variables")
    if isinstance(variables, list) and text:
        values = [wire.as_text(v) for v in variables]

        def fill(match: re.Match[str]) -> str:
            index = int(match.group(1)) - 1
            return values[index] if 0 <= index < len(values) else match.group(0)

        text = _PLACEHOLDER.sub(fill, text)
    properties: list[str] = []
    details: list[str] = []
    validation = exception.get("validationErrors")
    if isinstance(validation, dict):
        for prop, problems in validation.items():
            properties.append(str(prop))
            listed = problems if isinstance(problems, list) else [problems]
            described = ", ".join(t for t in (wire.as_text(p) for p in listed) if t)
            details.append(f"{prop}: {described}" if described else str(prop))
    if details:
        text = f"{text} ({'; '.join(details)})" if text else "; ".join(details)
    return code, text, properties


def _results(callback: CallbackRequest, what: str) -> list[dict[str, Any]]:
    content_type = callback.content_type
    if "xml" in content_type or callback.body.lstrip()[:1] == b"<":
        raise CallbackInvalid(
            f"an XML {what}: smsgw asks Infobip for application/json (notifyContentType)"
        )
    body = callback.json()
    if not isinstance(body, dict):
        raise CallbackInvalid(f"an Infobip {what} is a JSON object with results")
    results = body.get("results")
    if not isinstance(results, list) or not results:
        raise CallbackInvalid(f"an Infobip {what} needs a non-empty results list", field="results")
    for index, entry in enumerate(results):
        if not isinstance(entry, dict):
            raise CallbackInvalid(f"results[{index}] must be an object", field="results")
    return results


def _authorization(account: Account) -> str:
    return f"App {account.credentials.get('api_key', '')}"
