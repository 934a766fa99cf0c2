"""Twilio Programmable Messaging, REST API version 2010-04-01.

Wire format:
- Send: POST {base}/2010-04-01/Accounts/{AccountSid}/Messages.json, HTTP basic auth
  `AccountSid:AuthToken`, form fields `To` (E.164 with '+'), `From` (or
  `MessagingServiceSid`), `Body` and `StatusCallback` (the per-request DLR URL). One
  recipient per request. The answer is 201 with the Message resource (`sid` "SM…",
  `status` queued, or accepted/scheduled through a Messaging Service); a refusal is
  `{"code", "message", "more_info", "status"}` with an HTTP 4xx/5xx status.
- Status callbacks: form POST to `StatusCallback` with `MessageSid`/`SmsSid`,
  `MessageStatus`/`SmsStatus`, `ErrorCode` (failed/undelivered), `To`, `From`,
  `AccountSid`, `ApiVersion`…, signed with `X-Twilio-Signature`.
- Inbound: form POST (GET when the number is configured so) with `MessageSid`, `From`,
  `To`, `Body`, `NumMedia`…, signed the same way; Twilio expects TwiML in answer.
- Poll: GET {base}/2010-04-01/Accounts/{sid}/Messages/{MessageSid}.json (the resource).
- Balance: GET {base}/2010-04-01/Accounts/{sid}/Balance.json -> `{"balance", "currency"}`.

Signatures (`authenticate`), as Twilio's helper libraries verify them: base64 of
HMAC-SHA1 keyed with the auth token over the full URL Twilio called, followed for a
form POST by every body parameter sorted by name (repeated names sorted by value) as
name+value. A JSON body is covered instead by a `bodySHA256` query parameter (hex
SHA-256 of the raw body) and the URL alone is signed. Twilio signs the URL sometimes
with and sometimes without the port, so the URL as called, without its port, and with
the scheme's default port are all tried.

Account options read:
- `messaging_service_sid`: send `MessagingServiceSid` (Twilio picks the sender from the
  service's pool) instead of `From`.
- `validity_period`: seconds (1-36000) a message may wait in Twilio's queue, sent as
  `ValidityPeriod`; Twilio fails it with 30036 after that. A message's own validity
  (`valid_for` / `expires_at`) takes its place: what remains of it when it is sent.

Our reference: the Messages resource takes no client reference, but `StatusCallback`
is per message and Twilio calls it exactly as given, so smsgw adds its message ID to
it (`smsgw_message=`); status callbacks carry it back as the report's `reference`,
which finds a send whose answer was lost. GET Message needs Twilio's SID, which such
a send never got, so it is not polled.

Which answers prove a send was not taken (and are retried): HTTP 429 and 503, and the
TRANSIENT codes of `SEND_ERRORS` in a 4xx answer. A 20500, and any 5xx but 503, is an
unknown outcome: never resent.

There is no test flag in the API: Twilio's test credentials are a separate Account
SID/auth token pair, usable as an ordinary account (validated, never delivered, no
status callbacks), so an account in `test_mode` is smsgw's own dry run.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit
from xml.sax.saxutils import escape, quoteattr

import handlers.wire as wire
from handlers.base import CallbackRequest, Credential, ProviderHandler, WireRequest, WireResponse
from service import model
from service.errors import CallbackInvalid, Forbidden
from service.model import Account, Outcome, RecipientResult, Report, Status

API_VERSION = "2010-04-01"
SIGNATURE_HEADER = "x-twilio-signature"
REFERENCE_PARAMETER = "smsgw_message"
"""The StatusCallback query parameter carrying our message ID back (see `_with_reference`)."""
MAX_VALIDITY_SECONDS = 36000

# Every value of a Message resource's `status`, outbound first. Twilio's "failed" means
# it could not send the message at all (queue overflow, suspended account...) and
# charges nothing: the provider refused the submission, our FAILED. "canceled" is a
# scheduled message withdrawn before sending: it never left Twilio either. "read"
# (WhatsApp/RCS) implies delivery. "partially_delivered" means some of the message did
# not arrive, a final failure of the whole message as smsgw combines parts.
STATUSES: dict[str, Status] = {
    "accepted": Status.SUBMITTED,
    "scheduled": Status.SUBMITTED,
    "queued": Status.SUBMITTED,
    "sending": Status.SUBMITTED,
    "sent": Status.ENROUTE,
    "delivered": Status.DELIVERED,
    "read": Status.DELIVERED,
    "undelivered": Status.UNDELIVERED,
    "partially_delivered": Status.UNDELIVERED,
    "failed": Status.FAILED,
    "canceled": Status.FAILED,
}
# The statuses of messages Twilio received; no outbound message ever reports them.
INBOUND_STATUSES = frozenset({"receiving", "received"})
# Statuses a send answer may carry for a message Twilio will never send: no status
# callback follows (Twilio sends none for a message's initial status).
_DEAD_AT_BIRTH = frozenset({"failed", "undelivered", "canceled"})

# Delivery error codes that say more than the status: the validity period ran out in
# Twilio's queue, or the carrier blocked the message after Twilio handed it over.
EXPIRED_CODES = frozenset({30036})
CARRIER_REJECTED_CODES = frozenset({30004, 30007, 30032, 30034, 30042})

# Texts for the delivery error codes of status callbacks, used when the callback
# carries no ErrorMessage of its own.
DELIVERY_ERRORS: dict[int, str] = {
    30001: "Queue overflow",
    30002: "Account suspended",
    30003: "Unreachable destination handset",
    30004: "Message blocked",
    30005: "Unknown destination handset",
    30006: "Landline or unreachable carrier",
    30007: "Message filtered by the carrier",
    30008: "Unknown error",
    30009: "Missing segment",
    30010: "Message price exceeds max price",
    30032: "Toll-free number has not been verified",
    30034: "Message from an unregistered number (US A2P 10DLC)",
    30036: "Validity period expired",
    30042: "Sender ID blocked as generic or containing special characters",
}


_Error = wire.ErrorMeaning


# Twilio's error codes for creating a message, by what they mean for the message.
# ACCOUNT_ERROR: the account cannot send it (another account may); SENDER_REJECTED: the
# sender cannot (the fallback sender may); REFUSED: this message can never go;
# TRANSIENT: nothing was created, ask again later; UNKNOWN: Twilio warns that a create
# answered 20500 may have been processed all the same, so it is never resent (nor is
# any other 5xx but 503: a proxy's 500/502/504 proves nothing either).
SEND_ERRORS: dict[int, _Error] = {
    10001: _Error(Outcome.ACCOUNT_ERROR, "Account is not active"),
    20003: _Error(Outcome.ACCOUNT_ERROR, "Permission denied: wrong Account SID or auth token"),
    20005: _Error(Outcome.ACCOUNT_ERROR, "Account not active (out of funds or trial)"),
    20403: _Error(Outcome.ACCOUNT_ERROR, "Forbidden: account suspended or closed"),
    20404: _Error(Outcome.ACCOUNT_ERROR, "Not found: no such account resource"),
    21408: _Error(Outcome.ACCOUNT_ERROR, "Sending to this region is not enabled"),
    21608: _Error(Outcome.ACCOUNT_ERROR, "'To' is not a verified number of this trial account"),
    21609: _Error(Outcome.ACCOUNT_ERROR, "Invalid StatusCallback URL"),
    21705: _Error(Outcome.ACCOUNT_ERROR, "The Messaging Service is invalid"),
    30002: _Error(Outcome.ACCOUNT_ERROR, "Account suspended"),
    63038: _Error(Outcome.ACCOUNT_ERROR, "Account exceeded the daily messages limit"),
    21212: _Error(Outcome.SENDER_REJECTED, "Invalid 'From' number"),
    21266: _Error(Outcome.SENDER_REJECTED, "'To' and 'From' cannot be the same"),
    21401: _Error(Outcome.SENDER_REJECTED, "Not an SMS-enabled number or sender ID"),
    21601: _Error(Outcome.SENDER_REJECTED, "'From' is not an SMS-capable number of the account"),
    21603: _Error(Outcome.SENDER_REJECTED, "A 'From' or 'MessagingServiceSid' is required"),
    21606: _Error(Outcome.SENDER_REJECTED, "'From' cannot send to this destination"),
    21612: _Error(Outcome.SENDER_REJECTED, "Cannot route this combination of 'To' and 'From'"),
    21659: _Error(Outcome.SENDER_REJECTED, "'From' is not a Twilio number (or country mismatch)"),
    21660: _Error(Outcome.SENDER_REJECTED, "'From' does not belong to this account"),
    30032: _Error(Outcome.SENDER_REJECTED, "Toll-free number has not been verified"),
    30034: _Error(Outcome.SENDER_REJECTED, "Message from an unregistered number"),
    30042: _Error(Outcome.SENDER_REJECTED, "Sender ID blocked"),
    21211: _Error(Outcome.REFUSED, "Invalid 'To' phone number"),
    21265: _Error(Outcome.REFUSED, "'To' cannot be a short code"),
    21602: _Error(Outcome.REFUSED, "Message body is required"),
    21604: _Error(Outcome.REFUSED, "'To' phone number is required"),
    21610: _Error(Outcome.REFUSED, "The recipient unsubscribed (replied STOP)"),
    21614: _Error(Outcome.REFUSED, "'To' is not a valid mobile number"),
    21617: _Error(Outcome.REFUSED, "The message body exceeds 1600 characters"),
    21635: _Error(Outcome.REFUSED, "'To' cannot be a landline"),
    21658: _Error(Outcome.REFUSED, "A parameter exceeded its character limit"),
    20429: _Error(Outcome.TRANSIENT, "Too many requests"),
    20500: _Error(Outcome.UNKNOWN, "Twilio internal server error"),
    20503: _Error(Outcome.TRANSIENT, "Twilio service unavailable"),
    21611: _Error(Outcome.TRANSIENT, "The sender's queue is full"),
    30001: _Error(Outcome.TRANSIENT, "Queue overflow"),
    63017: _Error(Outcome.TRANSIENT, "Rate limit exceeded"),
}

# Characters XML 1.0 cannot carry at all, even escaped.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_DEFAULT_PORTS = {"https": "443", "http": "80"}
_TWIML_EMPTY = b'<?xml version="1.0" encoding="UTF-8"?><Response/>'


class TwilioHandler(ProviderHandler):
    name = "twilio"
    display_name = "Twilio"
    docs_url = "https://www.twilio.com/docs/messaging/api"
    public_base_url = "https://api.twilio.com"
    signed_headers = (SIGNATURE_HEADER,)
    credentials = (
        Credential("account_sid", "Account SID", "API key"),
        Credential("auth_token", "Auth token", "Secret key", secret=True),
    )
    example_account = """\
sender = "+15005550006"
pattern = "loop"                       # Twilio takes one recipient per request
priority = 70
active = false
"""
    max_batch = 1
    max_text_chars = 1600

    # -- sending -------------------------------------------------------------------

    def send_request(self, account: Account, batch: model.SendBatch) -> WireRequest:
        """The request for the batch's first message: Twilio takes one `To` per request."""
        message = batch.messages[0]
        form: list[tuple[str, str]] = [("To", message.to)]
        service = wire.as_text(account.options.get("messaging_service_sid"))
        if service:
            form.append(("MessagingServiceSid", service))
        else:
            form.append(("From", message.sender))
        form.append(("Body", message.text))
        if batch.dlr_url:
            form.append(("StatusCallback", _with_reference(batch.dlr_url, message.message_id)))
        # Twilio takes 1..36000 seconds; it keeps no message longer in any case.
        seconds = wire.validity(
            account.options.get("validity_period"), message.validity, 1, MAX_VALIDITY_SECONDS
        )
        if seconds is not None:
            form.append(("ValidityPeriod", str(seconds)))
        return WireRequest(
            "POST",
            f"{_account_url(account, batch.base_url, self.public_base_url)}/Messages.json",
            headers={
                **_auth_headers(account),
                "Content-Type": "application/x-www-form-urlencoded",
            },
            form=form,
        )

    def parse_send_response(
        self, account: Account, batch: model.SendBatch, response: WireResponse
    ) -> list[RecipientResult]:
        first = _send_result(response)
        # Only the first message went out (see send_request); an account cannot be
        # set to batch with max_batch 1, so this is a guard, not a path.
        others = RecipientResult(
            Outcome.REFUSED,
            error_code="not_sent",
            error_text="not sent: Twilio takes one recipient per request",
        )
        return [first] + [others for _ in batch.messages[1:]]

    # -- callbacks -----------------------------------------------------------------

    def authenticate(self, account: Account, callback: CallbackRequest) -> None:
        """Verify `X-Twilio-Signature` as Twilio computes it; Forbidden when it does not."""
        token = account.credentials.get("auth_token", "")
        given = wire.header(callback.headers, SIGNATURE_HEADER).strip()
        if not token:
            raise Forbidden("the account has no auth_token to verify X-Twilio-Signature")
        if not given:
            raise Forbidden("the callback has no X-Twilio-Signature", field=SIGNATURE_HEADER)
        if not _signature_matches(token, callback, given):
            raise Forbidden("X-Twilio-Signature does not match", field=SIGNATURE_HEADER)

    def parse_dlr(self, account: Account, callback: CallbackRequest) -> list[Report]:
        fields = callback.fields()
        return [
            _report(
                request_id=_first(fields, "MessageSid", "SmsSid"),
                status=_first(fields, "MessageStatus", "SmsStatus"),
                code=_field(fields, "ErrorCode"),
                message=_field(fields, "ErrorMessage"),
                recipient=_field(fields, "To"),
                names=("MessageSid", "MessageStatus", "ErrorCode"),
                reference=_field(fields, REFERENCE_PARAMETER),
            )
        ]

    def parse_inbound(self, account: Account, callback: CallbackRequest) -> list[model.InboundSms]:
        fields = callback.fields()
        sid = _first(fields, "MessageSid", "SmsMessageSid", "SmsSid")
        sender = _field(fields, "From")
        body = fields.get("Body")
        if not sid or not sender or not isinstance(body, str):
            raise CallbackInvalid("a Twilio inbound message needs MessageSid, From and Body")
        status = _field(fields, "SmsStatus").lower()
        if status and status not in INBOUND_STATUSES:
            raise CallbackInvalid(
                f"SmsStatus {status!r} belongs to an outbound message, not an inbound one",
                field="SmsStatus",
            )
        return [
            model.InboundSms(
                sender=sender,
                recipient=_field(fields, "To"),
                text=body,
                provider_id=sid,
            )
        ]

    def inbound_answer(
        self, account: Account, reply: str | None, status_url: str = ""
    ) -> WireResponse | None:
        """TwiML: empty `<Response/>`, or one `<Message>` carrying the auto-reply.

        Twilio posts the status callbacks of a TwiML message to its `action` URL (the
        older `statusCallback` attribute is deprecated in its favour).
        """
        if reply is None:
            body = _TWIML_EMPTY
        else:
            text = escape(_NOT_XML.sub("", reply))
            action = f" action={quoteattr(status_url)}" if status_url else ""
            body = (
                '<?xml version="1.0" encoding="UTF-8"?>'
                f"<Response><Message{action}>{text}</Message></Response>"
            ).encode()
        return WireResponse(200, body, {"Content-Type": "text/xml"})

    # -- polling -------------------------------------------------------------------

    def poll_request(
        self, account: Account, base_url: str, request_ids: Sequence[str]
    ) -> WireRequest | None:
        """A fetch of the first ID's Message resource only: Twilio reads one per request.

        The poller asks once per ID.
        """
        first = wire.first_id(request_ids)
        if first is None:
            return None
        sid = quote(first, safe="")
        return WireRequest(
            "GET",
            f"{_account_url(account, base_url, self.public_base_url)}/Messages/{sid}.json",
            headers=_auth_headers(account),
        )

    def poll_reports(
        self, account: Account, request_ids: Sequence[str], body: dict[str, Any]
    ) -> list[Report]:
        """The fetched Message resource as a report; nothing for an error or a non-resource."""
        if wire.as_text(body.get("status")).lower() in INBOUND_STATUSES:
            return []
        asked = request_ids[0].strip() if len(request_ids) == 1 else ""
        try:
            report = _report(
                request_id=_scalar(body.get("sid")) or asked,
                status=wire.as_text(body.get("status")),
                code=_scalar(body.get("error_code")),
                message=_scalar(body.get("error_message")),
                recipient=_scalar(body.get("to")),
                names=("sid", "status", "error_code"),
            )
        except CallbackInvalid:
            return []
        return [report]

    # -- balance -------------------------------------------------------------------

    def balance_request(self, account: Account, base_url: str) -> WireRequest | None:
        return WireRequest(
            "GET",
            f"{_account_url(account, base_url, self.public_base_url)}/Balance.json",
            headers=_auth_headers(account),
        )

    def parse_balance(self, account: Account, response: WireResponse) -> model.Balance:
        body = response.json()
        if not 200 <= response.status_code < 300:
            code, text = _error_fields(body)
            detail = f"{code}: {text}" if code and text else code or text
            raise ValueError(
                f"Twilio answered HTTP {response.status_code}"
                + (f" ({detail})" if detail else f": {wire.snippet(response.text) or 'no body'}")
            )
        if not isinstance(body, dict):
            raise ValueError(
                f"Twilio's balance answer is not a JSON object: {wire.snippet(response.text)}"
            )
        raw = body.get("balance")
        amount = wire.as_float(raw)
        if amount is None:
            raise ValueError(f"Twilio's balance answer has no numeric balance: {raw!r}")
        return model.Balance(amount, wire.as_text(body.get("currency")))


# -- sending helpers ---------------------------------------------------------------


def _account_url(account: Account, base_url: str, default: str) -> str:
    sid = quote(account.credentials.get("account_sid", "").strip(), safe="")
    return f"{wire.resolve_base(base_url, default)}/{API_VERSION}/Accounts/{sid}"


def _auth_headers(account: Account) -> dict[str, str]:
    sid = account.credentials.get("account_sid", "")
    pair = f"{sid}:{account.credentials.get('auth_token', '')}"
    return {
        "Authorization": "Basic " + base64.b64encode(pair.encode()).decode("ascii"),
        "Accept": "application/json",
    }


def _send_result(response: WireResponse) -> RecipientResult:
    status_code = response.status_code
    body = response.json()
    if 200 <= status_code < 300:
        return _created(response, body)
    code, message = _error_fields(body)
    known = SEND_ERRORS.get(int(code)) if code else None
    if wire.server_failure(status_code) is Outcome.UNKNOWN:
        outcome = Outcome.UNKNOWN  # whatever the body says, it may not be Twilio's
    elif known is not None:
        outcome = known.outcome
    else:
        outcome = wire.status_failure(status_code) or Outcome.REFUSED
    text = (
        message
        or (known.text if known else "")
        or wire.describe_unreadable("Twilio", response, body)
    )
    return RecipientResult(
        outcome,
        error_code=code or str(status_code),
        error_text=text,
        retry_after=wire.retry_after(response.headers) if outcome is Outcome.TRANSIENT else None,
    )


def _created(response: WireResponse, body: Any) -> RecipientResult:
    """A 2xx answer: the Message resource, or something that is not one."""
    sid = wire.as_text(body.get("sid")) if isinstance(body, dict) else ""
    if not isinstance(body, dict) or not sid:
        text = wire.describe_unreadable("Twilio", response, body)
        if isinstance(body, dict):
            text = f"no message sid in Twilio's answer: {text}"
        return RecipientResult(
            Outcome.REFUSED, error_code=str(response.status_code), error_text=text
        )
    status = wire.as_text(body.get("status")).lower()
    if status in _DEAD_AT_BIRTH:
        number = wire.as_int(body.get("error_code"))
        known = SEND_ERRORS.get(number) if number is not None else None
        reason = (
            wire.as_text(body.get("error_message"))
            or (known.text if known else "")
            or DELIVERY_ERRORS.get(number or 0, "")
        )
        return RecipientResult(
            known.outcome if known else Outcome.REFUSED,
            error_code=str(number) if number is not None else status,
            error_text=f"Twilio created {sid} as {status}" + (f": {reason}" if reason else ""),
        )
    # A send answer never finalizes a message; "sent" (or later) means Twilio has
    # already handed it to the carrier.
    mapped = STATUSES.get(status, Status.SUBMITTED)
    return RecipientResult(
        Outcome.ACCEPTED,
        (sid,),
        Status.SUBMITTED if mapped is Status.SUBMITTED else Status.ENROUTE,
    )


def _error_fields(body: Any) -> tuple[str, str]:
    """Twilio's error code (as digits) and message from an error body, where present."""
    if not isinstance(body, dict):
        return "", ""
    number = wire.as_int(body.get("code"))
    return (str(number) if number is not None else "", wire.as_text(body.get("message")))


# -- signature helpers -------------------------------------------------------------


def signature(auth_token: str, url: str, params: Sequence[tuple[str, str]] = ()) -> str:
    """Twilio's X-Twilio-Signature for `url` and the POST parameters `params`."""
    data = url + "".join(name + value for name, value in sorted(params))
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def _signature_matches(token: str, callback: CallbackRequest, given: str) -> bool:
    query = dict(parse_qsl(urlsplit(callback.url).query, keep_blank_values=True))
    params: list[tuple[str, str]] = []
    if "bodySHA256" in query:
        # A JSON body: its hash rides in the signed URL, and the URL alone is signed.
        digest = hashlib.sha256(callback.body).hexdigest()
        if not hmac.compare_digest(digest.encode(), query["bodySHA256"].lower().encode()):
            return False
    elif callback.method.upper() == "POST" and callback.body.strip():
        try:
            params = callback.form()
        except CallbackInvalid:
            return False
    given_bytes = given.encode()
    matches = [
        hmac.compare_digest(signature(token, url, params).encode(), given_bytes)
        for url in _url_variants(callback.url)
    ]
    return any(matches)


def _url_variants(url: str) -> list[str]:
    """The URL as called, without its port, and with its scheme's default port.

    Only the authority changes; the rest of the URL stays byte for byte as it came.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return [url]
    end = next((i for i, ch in enumerate(rest) if ch in "/?#"), len(rest))
    authority, tail = rest[:end], rest[end:]
    userinfo, at, hostport = authority.rpartition("@")
    if hostport.startswith("["):
        close = hostport.find("]")
        host, port_part = hostport[: close + 1], hostport[close + 1 :]
    else:
        host, colon, port = hostport.partition(":")
        port_part = colon + port
    prefix = f"{scheme}{sep}{userinfo}{at}{host}"
    variants = [url, prefix + tail]
    default = _DEFAULT_PORTS.get(scheme.lower())
    if not port_part and default:
        variants.append(f"{prefix}:{default}{tail}")
    return list(dict.fromkeys(variants))


# -- report helpers ----------------------------------------------------------------


def _with_reference(url: str, message_id: str) -> str:
    """The StatusCallback URL carrying our message ID, which Twilio calls back as given."""
    return f"{url}{'&' if '?' in url else '?'}{urlencode({REFERENCE_PARAMETER: message_id})}"


def _report(
    *,
    request_id: str,
    status: str,
    code: str,
    message: str,
    recipient: str,
    names: tuple[str, str, str],
    reference: str = "",
) -> Report:
    id_name, status_name, code_name = names
    if not request_id:
        raise CallbackInvalid(f"a Twilio status report needs {id_name}", field=id_name)
    word = status.strip().lower()
    if not word:
        raise CallbackInvalid(f"a Twilio status report needs {status_name}", field=status_name)
    if word in INBOUND_STATUSES:
        raise CallbackInvalid(
            f"status {word!r} belongs to an inbound message: point the number's messaging "
            "webhook at the inbound URL, not the delivery-report URL",
            field=status_name,
        )
    mapped = STATUSES.get(word)
    if mapped is None:
        raise CallbackInvalid(f"{status!r} is not a Twilio message status", field=status_name)
    number: int | None = None
    if code.strip():
        number = wire.as_int(code)
        if number is None:
            raise CallbackInvalid(f"{code_name} must be a number", field=code_name)
    if number is not None and mapped in (Status.UNDELIVERED, Status.FAILED):
        if number in EXPIRED_CODES:
            mapped = Status.EXPIRED
        elif number in CARRIER_REJECTED_CODES and mapped is Status.UNDELIVERED:
            mapped = Status.REJECTED
    reason = message or (DELIVERY_ERRORS.get(number, "") if number is not None else "")
    return Report(
        request_id=request_id,
        status=mapped,
        recipient=recipient,
        error_code=str(number) if number is not None else "",
        error_text=f"{word}: {reason}" if reason else word,
        reference=reference,
    )


def _field(fields: Mapping[str, Any], name: str) -> str:
    """A scalar field as text; a list or object where Twilio sends text is invalid."""
    value = fields.get(name)
    if isinstance(value, dict | list):
        raise CallbackInvalid(f"{name} must be text", field=name)
    return wire.as_text(value)


def _first(fields: Mapping[str, Any], *names: str) -> str:
    """The first of `names` present and not blank (Twilio sends legacy twins, SmsSid...)."""
    for name in names:
        value = _field(fields, name)
        if value:
            return value
    return ""


def _scalar(value: Any) -> str:
    return "" if isinstance(value, dict | list) else wire.as_text(value)
