"""1609SMS (1609sms.com), the "SMS Gateway API" page (http://www.1609sms.com/uk/sms-gateway.htm).

Wire format, as that page documents it (it is the only public description; no SDK,
client library or other reference to this API could be found):
- Send: GET or POST (form) {base}/module/gateway.php with `clientuser`, `clientpwd`,
  `message`, `to` (country code and number without '+', e.g. 44701xxxxxxx; several
  numbers comma-separated) and `sender` (up to 11 characters). Optional flags: `logging`
  (keep the message in the portal's history), `delivery` (answer with an SMS ID to poll),
  `type=long` (up to 459 characters in at most 3 parts of 153) and `test` (every check,
  nothing sent, no credits used). The page writes both `=ja` and `=yes` for the flags;
  its text and every example use `yes`, which is what we send.
- Answer: plain text `OK`, or `OK 1234567` when `delivery=yes`; `ERROR <code>` on
  failure, with the codes 100-120 and 150 (the `_ERRORS` table). The page's header
  writes the code as "x.x.x", so a dotted code (`ERROR 1.0.4`) is read as 104 too.
- Delivery status: nothing is pushed. GET {base}/module/gatewayrapport.php?smsid=<id>
  answers one bare code: DELIVERED, NOT DELIVERED, BUFFERED, SUBMITTED, REJECTED or
  NONE (`parse_poll_status`). The answer does not repeat the ID; the poller passes the
  ID it asked about to `parse_poll_response`. No credentials are documented for it,
  so none are sent.
- Credits: GET {base}/module/gateway.php?clientuser=&clientpwd=&action=credits answers
  a bare number (`476`).
- No client reference is documented, nothing is pushed and the report page needs the
  SMS ID of the answer: a send whose answer was lost can only be concluded (after
  `[ambiguous] conclude_after`), never matched to a status.
- Retried: HTTP 429 and 503, and the `_ERRORS` codes marked TRANSIENT (1609SMS's own
  answer, unless it came with another 5xx). Any other 5xx is an unknown outcome.
- Inbound SMS on a virtual number is mentioned, but no callback format is documented;
  `parse_inbound` refuses every callback with that reason.

Why one recipient per request (`max_batch = 1`): the page lets `to` carry several
numbers, but a request then gets one SMS ID and the status page takes one SMS ID and
answers one status. A batch would leave smsgw unable to tell which recipient got
which status, so every message goes in its own request and gets its own ID
(`shares_request_ids` stays False).

Account options:
- `method`: "GET" (default, as the page's example) or "POST" (form fields, which keeps
  the password out of proxy and server access logs); any other value means GET, case
  and surrounding space are ignored. Applies to send and credits;
  the status page is always asked with GET, as documented.
- `sha1_password` (bool, default false): send the lowercase hex SHA-1 digest of the
  `password` credential as `clientpwd` instead of the password ("only the use of
  1-case characters is allowed": we use lower case). The digest is computed here, never
  read from options, because options are shown unmasked by the API and a digest
  authenticates exactly like the password. An operator who wants smsgw never to hold
  the plain password stores the lowercase digest itself as `password` and leaves this
  option off: 1609SMS accepts either form in `clientpwd`, and the credential is masked.
- `logging` (bool, default true): send `logging=yes` so the messages appear under
  "history" in the 1609SMS portal; false leaves the flag out.
- `test_mode` (bool): send `test=yes`; a passing answer is Outcome.VALIDATED.

Longer texts: `type=long` is sent when the text exceeds 160 characters (or smsgw counts
more than one segment, e.g. UCS-2 text). `max_text_chars` is 459, the page's limit, so
smsgw refuses longer texts before they reach 1609SMS (which would answer 118).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import NamedTuple

import handlers.wire as wire
from handlers.base import LOGIN, CallbackRequest, ProviderHandler, WireRequest, WireResponse
from service import model
from service.errors import CallbackInvalid
from service.model import Account, Outcome, RecipientResult, Report, Status

SEND_PATH = "/module/gateway.php"
STATUS_PATH = "/module/gatewayrapport.php"
SINGLE_SMS_CHARS = 160
LONG_SMS_CHARS = 459


# Every error code of the page, by what it means for the message.
_ERRORS = wire.meanings_by_outcome(
    {
        Outcome.ACCOUNT_ERROR: {
            "100": "username is empty",
            "101": "password is empty",
            "104": "no valid username and password combination",
            "108": "not enough credits left",
            "115": "account blocked: payment not received",
            "116": "account blocked; contact 1609SMS",
        },
        Outcome.SENDER_REJECTED: {
            "109": "the sender name is empty",
            "110": "a sender number must start with '+'",
            "111": "no valid sender name (too long)",
            "113": "the sender contains characters not allowed on all networks",
            "117": "this sender name is not allowed",
        },
        Outcome.REFUSED: {
            "102": "the message has no content",
            "103": "the mobile number has no content",
            "105": "message longer than 160 characters without type=long",
            "106": "no valid mobile number (country code, then number)",
            "107": "no valid country code: this country cannot be reached",
            "112": "no valid country code",
            "114": "no valid country code: the country is not permitted",
            "118": "a long message may have at most 459 characters (3 parts)",
            "119": "long messages cannot be sent to this country",
        },
        Outcome.TRANSIENT: {
            "120": "a problem with the 1609SMS gateway",
            "150": "scheduled maintenance: the service is unavailable",
        },
    }
)


class _Delivery(NamedTuple):
    status: Status | None
    text: str


# The status page's codes. SUBMITTED means the operator has the message (1609SMS
# passed it on) but has reported nothing yet: past 1609SMS's own acceptance, so
# ENROUTE, like BUFFERED. NONE carries no status at all: no report.
_DELIVERY: dict[str, _Delivery] = {
    "DELIVERED": _Delivery(Status.DELIVERED, "delivered"),
    "NOT DELIVERED": _Delivery(Status.UNDELIVERED, "not delivered"),
    "BUFFERED": _Delivery(Status.ENROUTE, "accepted by the operator, delivery pending"),
    "SUBMITTED": _Delivery(Status.ENROUTE, "passed to the operator, no status yet"),
    "REJECTED": _Delivery(Status.REJECTED, "rejected by the operator"),
    "NONE": _Delivery(None, "no delivery report available"),
}
# Longest first, so that "NOT DELIVERED" is never read as "DELIVERED".
_DELIVERY_CODES = sorted(_DELIVERY, key=len, reverse=True)

# An SMS ID is a run of letters and digits with at least one digit (the page shows
# digits only); "OK, sent" has none.
_OK = re.compile(
    r"OK\b[\s:;,=#-]*(?:(?P<id>[A-Za-z0-9._-]*\d[A-Za-z0-9._-]*)\b)?(?P<rest>.*)", re.I | re.S
)
_ERROR = re.compile(
    r"ERROR\b[\s:;,=#-]*(?P<code>\d+(?:\.\d+)*)?[\s:;,.=-]*(?P<rest>.*)", re.I | re.S
)
_NUMBER = re.compile(r"[+-]?[0-9]+(?:[.,][0-9]+)?")
_SPACE = re.compile(r"\s+")


class Sms1609Handler(ProviderHandler):
    name = "sms1609"
    display_name = "1609SMS"
    docs_url = "http://www.1609sms.com/uk/sms-gateway.htm"
    public_base_url = "http://217.19.227.48"
    credentials = LOGIN
    example_account = """\
sender = "SMSGW"
pattern = "loop"
priority = 40
options = { sha1_password = true, test_mode = false }
"""
    max_batch = 1
    max_text_chars = LONG_SMS_CHARS
    pushes_reports = False
    native_test_mode = True

    def wire_secrets(self, account: Account) -> tuple[str, ...]:
        digest = _client_password(account)
        return (digest,) if digest != account.credentials.get("password", "") else ()

    # -- sending -------------------------------------------------------------------

    def send_request(self, account: Account, batch: model.SendBatch) -> WireRequest:
        """The send request for the batch (one message: `max_batch` is 1).

        Were it ever given more, the numbers go comma-separated in one request as the
        page allows, and every message gets the one SMS ID of the answer.
        """
        first = batch.messages[0]
        fields: list[tuple[str, str]] = [
            *_login(account),
            ("message", first.text),
            ("to", ",".join(wire.digits_of(m.to) for m in batch.messages)),
            ("sender", first.sender),
        ]
        if _flag(account.options, "logging", default=True):
            fields.append(("logging", "yes"))
        fields.append(("delivery", "yes"))
        if len(first.text) > SINGLE_SMS_CHARS or first.segments > 1:
            fields.append(("type", "long"))
        if _flag(account.options, "test_mode"):
            fields.append(("test", "yes"))
        return _gateway_request(
            account, wire.resolve_base(batch.base_url, self.public_base_url), fields
        )

    def parse_send_response(
        self, account: Account, batch: model.SendBatch, response: WireResponse
    ) -> list[RecipientResult]:
        return [_send_result(account, response) for _ in batch.messages]

    # -- callbacks -----------------------------------------------------------------

    def parse_dlr(self, account: Account, callback: CallbackRequest) -> list[Report]:
        raise CallbackInvalid(
            f"1609SMS pushes no delivery reports: their status is polled from {STATUS_PATH}"
        )

    def parse_inbound(self, account: Account, callback: CallbackRequest) -> list[model.InboundSms]:
        raise CallbackInvalid(
            "1609SMS documents no format for forwarding inbound SMS from a virtual number"
        )

    # -- polling -------------------------------------------------------------------

    def poll_request(
        self, account: Account, base_url: str, request_ids: Sequence[str]
    ) -> WireRequest | None:
        """The status page for the first ID only: it takes one SMS ID per request."""
        sms_id = wire.first_id(request_ids)
        if sms_id is None:
            return None
        return WireRequest(
            "GET",
            f"{wire.resolve_base(base_url, self.public_base_url)}{STATUS_PATH}",
            params=(("smsid", sms_id),),
            headers={"Accept": "text/plain"},
        )

    def parse_poll_response(
        self, account: Account, request_ids: Sequence[str], response: WireResponse
    ) -> list[Report]:
        """One report for the polled ID (the first of `request_ids`), or none.

        The answer is a bare code without the ID, so without `request_ids` nothing can
        be reported; NONE, an error answer or anything unreadable give no report.
        """
        sms_id = wire.first_id(request_ids)
        if sms_id is None:
            return []
        if not 200 <= response.status_code < 300:
            return []
        code = _delivery_code(response.text)
        if code is None:
            return []
        delivery = _DELIVERY[code]
        if delivery.status is None:
            return []
        return [
            Report(
                request_id=sms_id,
                status=delivery.status,
                error_code=code,
                error_text=delivery.text,
            )
        ]

    # -- balance -------------------------------------------------------------------

    def balance_request(self, account: Account, base_url: str) -> WireRequest | None:
        fields = [*_login(account), ("action", "credits")]
        return _gateway_request(account, wire.resolve_base(base_url, self.public_base_url), fields)

    def parse_balance(self, account: Account, response: WireResponse) -> model.Balance:
        text = _clean(response.text)
        error = _ERROR.fullmatch(text)
        if error:
            code = _error_code(error.group("code"))
            known = _ERRORS.get(code)
            meaning = known.text if known else "unknown error code"
            raise ValueError(f"1609SMS refused the credits request: ERROR {code} ({meaning})")
        if not 200 <= response.status_code < 300:
            raise ValueError(
                f"1609SMS answered the credits request with HTTP {response.status_code}: "
                f"{wire.snippet(response.text) or 'empty body'}"
            )
        amount = wire.as_float(text.replace(",", ".")) if _NUMBER.fullmatch(text) else None
        if amount is None:
            raise ValueError(
                f"1609SMS answered the credits request with no number: "
                f"{wire.snippet(response.text) or 'empty body'}"
            )
        return model.Balance(amount, "credits")


# -- request helpers ---------------------------------------------------------------


def _login(account: Account) -> list[tuple[str, str]]:
    return [
        ("clientuser", account.credentials.get("username", "")),
        ("clientpwd", _client_password(account)),
    ]


def _client_password(account: Account) -> str:
    """What goes in `clientpwd`: the password, or its lowercase SHA-1 hex digest."""
    password = account.credentials.get("password", "")
    if password and _flag(account.options, "sha1_password"):
        # SHA-1 is what 1609SMS prescribes; it hides the password, nothing more.
        return hashlib.sha1(password.encode("utf-8")).hexdigest()  # noqa: S324
    return password


def _gateway_request(account: Account, base_url: str, fields: list[tuple[str, str]]) -> WireRequest:
    url = f"{base_url}{SEND_PATH}"
    headers = {"Accept": "text/plain"}
    if str(account.options.get("method", "GET")).strip().upper() == "POST":
        return WireRequest(
            "POST",
            url,
            headers={**headers, "Content-Type": "application/x-www-form-urlencoded"},
            form=tuple(fields),
        )
    return WireRequest("GET", url, params=tuple(fields), headers=headers)


def _flag(options: Mapping[str, object], key: str, *, default: bool = False) -> bool:
    """A boolean option, also when written as text ("yes", "true", "1", "no", ...)."""
    value = options.get(key, default)
    if isinstance(value, str):
        return value.strip().lower() not in ("", "0", "false", "no", "off", "nee", "n")
    return bool(value)


# -- answer helpers ----------------------------------------------------------------


def _send_result(account: Account, response: WireResponse) -> RecipientResult:
    text = _clean(response.text)
    status = response.status_code
    error = _ERROR.fullmatch(text)
    if error and wire.server_failure(status) is not Outcome.UNKNOWN:
        code = _error_code(error.group("code"))
        known = _ERRORS.get(code)
        if known is not None:
            result = RecipientResult(
                known.outcome,
                error_code=code,
                error_text=_with_detail(known.text, error.group("rest")),
            )
            if known.outcome is Outcome.TRANSIENT:
                result = replace(result, retry_after=wire.retry_after(response.headers))
            return result
    server = wire.server_failure(status)
    if server is not None:
        failing = _describe(response, "1609SMS is unavailable or failing")
        return wire.with_retry_after(
            RecipientResult(server, error_code=str(status), error_text=failing), response
        )
    if status in (401, 403):
        return RecipientResult(
            Outcome.ACCOUNT_ERROR,
            error_code=str(status),
            error_text=_describe(response, "1609SMS refused the login"),
        )
    if error:
        # An ERROR answer with a code the page does not list, or with none at all:
        # the message was not taken and nothing says a retry would help.
        code = _error_code(error.group("code")) or "ERROR"
        return RecipientResult(
            Outcome.REFUSED,
            error_code=code,
            error_text=_with_detail("unknown 1609SMS error code", error.group("rest")),
        )
    ok = _OK.fullmatch(text) if 200 <= status < 300 else None
    if ok is None:
        return RecipientResult(
            Outcome.REFUSED,
            error_code=str(status),
            error_text=_describe(response, "unexpected answer from 1609SMS"),
        )
    sms_id = (ok.group("id") or "").strip("._-")
    if _flag(account.options, "test_mode"):
        return RecipientResult(
            Outcome.VALIDATED,
            error_text="1609SMS test mode (test=yes): every check passed, nothing was sent"
            + (f" (SMS ID {sms_id})" if sms_id else ""),
        )
    if not sms_id:
        # delivery=yes was sent, so 1609SMS should have named the SMS; it took the
        # message, but without an ID its status can never be asked for.
        return RecipientResult(
            Outcome.ACCEPTED,
            error_text="1609SMS answered OK without an SMS ID although delivery=yes was sent",
        )
    return RecipientResult(Outcome.ACCEPTED, (sms_id,), Status.SUBMITTED)


def _error_code(raw: str | None) -> str:
    """The error number, dots of the page's "x.x.x" notation removed."""
    return (raw or "").replace(".", "")


def _with_detail(meaning: str, rest: str | None) -> str:
    detail = wire.snippet(rest or "")
    return f"{meaning}: {detail}" if detail else meaning


def _clean(text: str) -> str:
    return text.replace("\ufeff", "").strip()


def _describe(response: WireResponse, what: str) -> str:
    shown = wire.snippet(response.text)
    status = response.status_code
    return f"{what} (HTTP {status}): {shown}" if shown else f"{what} (HTTP {status})"


# -- status helpers ----------------------------------------------------------------


def _delivery_code(text: str) -> str | None:
    """The status page's code at the start of `text`, normalized, or None."""
    words = _SPACE.sub(" ", re.sub(r"[_-]", " ", _clean(text))).upper()
    for code in _DELIVERY_CODES:
        if words == code or (words.startswith(code) and not words[len(code)].isalnum()):
            return code
    if words.startswith("NOTDELIVERED"):
        return "NOT DELIVERED"
    return None


def parse_poll_status(text: str) -> Status | None:
    """The normalized status of a status-page answer; None for NONE or no known code."""
    code = _delivery_code(text)
    return _DELIVERY[code].status if code is not None else None
