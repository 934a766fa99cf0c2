"""A fake Twilio Programmable Messaging API (2010-04-01) to test against over real HTTP.

It serves the documented endpoints on their documented paths, checks HTTP basic auth
as Twilio does, answers with the Message resource or Twilio's error JSON, and calls
back the way Twilio does: a form POST to each message's `StatusCallback`, signed with
`X-Twilio-Signature` over the exact URL it was given and the sorted parameters.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import random
import re
import uuid
from collections.abc import Callable
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qsl
from xml.etree import ElementTree

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.fake_server import FakeServer

Plan = list[tuple[str, int | None]]
"""Status callback steps: (MessageStatus, ErrorCode or None)."""

API = "/2010-04-01/Accounts/{account_sid}"
MAGIC_SENDER = "+15005550006"
"""The test credentials' sender that passes every check; also the pool number a
Messaging Service 'picks' in this fake."""

# Twilio's test-credential magic numbers (docs: Test Credentials, "Test SMS messages").
MAGIC_FROM_ERRORS = {"+15005550001": 21212, "+15005550007": 21606, "+15005550008": 21611}
MAGIC_TO_ERRORS = {
    "+15005550001": 21211,
    "+15005550002": 21612,
    "+15005550003": 21408,
    "+15005550004": 21610,
    "+15005550009": 21614,
}
# HTTP status Twilio answers each error code with; 400 for the rest.
ERROR_STATUS = {
    20003: 401,
    20005: 401,
    20403: 403,
    20404: 404,
    20429: 429,
    20500: 500,
    20503: 503,
}
ERROR_MESSAGES = {
    20003: "Authentication Error - invalid username",
    20005: "Account not active",
    20404: "The requested resource {path} was not found",
    20429: "Too Many Requests",
    20500: "Internal Server Error",
    20503: "Service Unavailable",
    21211: "The 'To' number {to} is not a valid phone number.",
    21212: "The 'From' number {sender} is not a valid phone number, shortcode, or alphanumeric"
    " sender ID.",
    21408: "Permission to send an SMS has not been enabled for the region indicated by the"
    " 'To' number: {to}.",
    21602: "Message body is required.",
    21603: "A 'From' or 'MessagingServiceSid' parameter is required to send a message.",
    21604: "A 'To' phone number is required.",
    21624: "Invalid validity period value",
    21606: "The From phone number {sender} is not a valid, SMS-capable inbound phone number or"
    " short code for your account.",
    21610: "Attempt to send to unsubscribed recipient",
    21611: "This 'From' number has exceeded the maximum number of queued messages",
    21612: "The 'To' phone number: {to}, is not currently reachable using the 'From' phone"
    " number: {sender} via SMS.",
    21614: "'To' number {to} is not a valid mobile number",
    21617: "The concatenated message body exceeds the 1600 character limit.",
}
_STATUS_FOR_FAIL = {401: 20003, 404: 20404, 429: 20429, 500: 20500, 503: 20503}
_FINAL = frozenset({"delivered", "undelivered", "failed", "read", "canceled"})
_E164 = re.compile(r"\+[1-9]\d{6,14}")
_MAX_BODY = 1600


def twilio_signature(auth_token: str, url: str, params: dict[str, str]) -> str:
    """X-Twilio-Signature: base64(HMAC-SHA1(token, url + name1value1 + ...)), names sorted."""
    data = url + "".join(f"{name}{params[name]}" for name in sorted(params))
    mac = hmac.new(auth_token.encode("utf-8"), data.encode("utf-8"), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode("ascii")


class FakeTwilio(FakeServer):
    """Twilio's Messaging API on loopback: `async with serve(fake.app) as base_url: ...`.

    Endpoints (basic auth `account_sid:auth_token`; another SID in the path, or a wrong
    or missing login, gets 401 with code 20003):
    - POST /2010-04-01/Accounts/{sid}/Messages.json (form `To`, `From` or
      `MessagingServiceSid`, `Body`, optional `StatusCallback`, `ValidityPeriod`) ->
      201 Message resource (status "queued", or "accepted" through a Messaging Service).
    - GET /2010-04-01/Accounts/{sid}/Messages/{MessageSid}.json -> the resource as it
      stands (404 code 20404 for an unknown SID).
    - GET /2010-04-01/Accounts/{sid}/Balance.json -> `{"account_sid", "balance", "currency"}`.
    Refusals are `{"code", "message", "more_info", "status"}` (401s also carry `detail`).
    The test credentials' magic numbers are honoured for every login: From +15005550001
    (21212), +15005550007 (21606), +15005550008 (21611); To +15005550001 (21211),
    +15005550002 (21612), +15005550003 (21408), +15005550004 (21610), +15005550009 (21614).

    Knobs and records (plain attributes):
    - `sent`: the form of every message created, in order; `requests_seen`: every create
      request that arrived, refused ones included.
    - `messages`: MessageSid -> the Message resource (a dict, updated as statuses move).
    - `fail_next`: HTTP statuses to answer the next create requests with instead, first
      first (e.g. `[503, 429]`), as Twilio error JSON (429 -> 20429 with `Retry-After: 1`,
      500 -> 20500, 503 -> 20503, 401 -> 20003, 404 -> 20404); nothing is created.
    - `error_for`: To number -> a Twilio error code to refuse that number's creates with
      (any code; its HTTP status from `ERROR_STATUS`, else 400).
    - `status_plan`: (MessageStatus, ErrorCode) steps each created message goes through
      after the answer, default `[("sent", None), ("delivered", None)]`;
      `status_plan_for`: optional callable(To) -> plan overriding it per number.
    - `push_reports`: False keeps statuses moving (visible to polls) but calls nobody.
    - `dlr_url`: where status callbacks go for a message created without StatusCallback
      (a Messaging Service's own callback); None: nowhere.
    - `dlr_before_response`: push a create's callbacks, and wait for their answers,
      before answering the create (the report racing ahead of the SID).
    - `duplicates`: extra copies of every callback (Twilio retries).
    - `sign`: False sends callbacks without X-Twilio-Signature; `signing_token`: sign with
      this token instead of the auth token (a forger); `tamper`: parameters overwritten
      after signing (a man in the middle).
    - `dlr_acks`: the HTTP status the callback answered to each status push, in order (0:
      unreachable); `callbacks`: (method, url, params, headers) of every push made.
    - `inbound_url` / `inbound_method` ("POST" or "GET"): where `push_inbound` calls;
      `inbound_answers`: (status, content-type, body) of each answer it got;
      `twiml_sent`: the fields of each `<Message>` those answers made it send.
    - `balance` / `currency`: what Balance.json says.

    Pushes made after a create's answer run as background tasks; `drain()` waits for all
    of them. The app's lifespan owns the one httpx client used for pushing.
    """

    def __init__(self, account_sid: str, auth_token: str, *, seed: int = 0) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.messages: dict[str, dict[str, Any]] = {}
        self.fail_next: list[int] = []
        self.error_for: dict[str, int] = {}
        self.status_plan: Plan = [("sent", None), ("delivered", None)]
        self.status_plan_for: Callable[[str], Plan] | None = None
        self.push_reports = True
        self.sign = True
        self.signing_token: str | None = None
        self.tamper: dict[str, str] = {}
        self.callbacks: list[tuple[str, str, dict[str, str], dict[str, str]]] = []
        self.inbound_method = "POST"
        self.inbound_answers: list[tuple[int, str, bytes]] = []
        self.twiml_sent: list[dict[str, str]] = []
        self.balance = "12.50"
        self.currency = "USD"
        self._ids = random.Random(f"twilio-{seed}")
        super().__init__(
            [
                Route(f"{API}/Messages.json", self._create, methods=["POST"]),
                Route(f"{API}/Messages/{{sid}}.json", self._fetch, methods=["GET"]),
                Route(f"{API}/Balance.json", self._balance, methods=["GET"]),
            ]
        )

    # -- test controls -------------------------------------------------------------

    async def push_status(self, sid: str, status: str, error_code: int | None = None) -> int:
        """Move message `sid` to `status` and call its status callback; returns the
        callback's HTTP status (0: unreachable or nowhere to call)."""
        resource = self.messages[sid]
        _advance(resource, status, error_code)
        url = resource["_status_callback"] or self.dlr_url
        if not self.push_reports or not url:
            return 0
        params = {
            "SmsSid": sid,
            "SmsStatus": status,
            "MessageStatus": status,
            "To": resource["to"],
            "MessageSid": sid,
            "AccountSid": self.account_sid,
            "From": resource["from"] or MAGIC_SENDER,
            "ApiVersion": "2010-04-01",
        }
        if resource["messaging_service_sid"]:
            params["MessagingServiceSid"] = resource["messaging_service_sid"]
        if error_code is not None:
            params["ErrorCode"] = str(error_code)
        if status in ("delivered", "undelivered"):
            params["RawDlrDoneDate"] = "2611220810"
        answer = await self._call_back("POST", url, params)
        self.dlr_acks.append(answer.status_code if answer else 0)
        return answer.status_code if answer else 0

    async def push_inbound(self, frm: str, to: str, body: str, *, num_media: int = 0) -> int:
        """Call `inbound_url` with an incoming SMS as Twilio does; returns the HTTP status."""
        if self.inbound_url is None:
            raise RuntimeError("set inbound_url before pushing inbound messages")
        sid = self._sid("SM")
        params = {
            "ToCountry": "US",
            "ToState": "CA",
            "SmsMessageSid": sid,
            "NumMedia": str(num_media),
            "ToCity": "",
            "FromZip": "",
            "SmsSid": sid,
            "FromState": "",
            "SmsStatus": "received",
            "FromCity": "",
            "Body": body,
            "FromCountry": "SE",
            "To": to,
            "ToZip": "",
            "NumSegments": "1",
            "MessageSid": sid,
            "AccountSid": self.account_sid,
            "From": frm,
            "ApiVersion": "2010-04-01",
        }
        for n in range(num_media):
            params[f"MediaContentType{n}"] = "image/jpeg"
            params[f"MediaUrl{n}"] = (
                f"https://api.twilio.com{API.format(account_sid=self.account_sid)}"
                f"/Messages/{sid}/Media/ME{n:032d}"
            )
        answer = await self._call_back(self.inbound_method, self.inbound_url, params)
        if answer is None:
            return 0
        self.inbound_answers.append(
            (answer.status_code, answer.headers.get("content-type", ""), answer.content)
        )
        if answer.status_code == 200 and "xml" in answer.headers.get("content-type", ""):
            self._obey_twiml(answer.content, frm, to)
        return answer.status_code

    def _obey_twiml(self, twiml: bytes, frm: str, to: str) -> None:
        """Send each `<Message>` of an inbound answer back to its sender, reporting its
        status to the verb's `action` URL, as Twilio does for TwiML replies."""
        root = ElementTree.fromstring(twiml)
        for verb in root.iter("Message"):
            sid = self._sid("SM")
            fields = {"To": verb.get("to", frm), "From": verb.get("from", to)}
            fields |= {"Body": verb.text or "", "StatusCallback": verb.get("action", "")}
            self.twiml_sent.append(fields)
            self.messages[sid] = self._resource(sid, fields)
            self._spawn(self._plan(sid, fields["To"]))

    # -- endpoints -----------------------------------------------------------------

    async def _create(self, request: Request) -> JSONResponse:
        self.requests_seen += 1
        refused = self._refuse_login(request)
        if refused is not None:
            return refused
        if self.fail_next:
            status = self.fail_next.pop(0)
            return _error(_STATUS_FOR_FAIL.get(status, 20500), status=status)
        fields = _form(request.headers.get("content-type", ""), await request.body())
        to, sender = fields.get("To", ""), fields.get("From", "")
        service = fields.get("MessagingServiceSid", "")
        body = fields.get("Body", "")
        code = (
            _problem(to, sender, service, body)
            or _validity_problem(fields.get("ValidityPeriod"))
            or self.error_for.get(to)
        )
        if code:
            return _error(code, to=to, sender=sender)
        sid = self._sid("SM")
        self.sent.append(fields)
        self.messages[sid] = self._resource(sid, fields)
        pushes = self._plan(sid, to)
        await self._answer_after(pushes)
        return JSONResponse(_public(self.messages[sid]), status_code=201)

    async def _fetch(self, request: Request) -> JSONResponse:
        refused = self._refuse_login(request)
        if refused is not None:
            return refused
        resource = self.messages.get(request.path_params["sid"])
        if resource is None:
            return _error(20404, path=request.url.path)
        return JSONResponse(_public(resource))

    async def _balance(self, request: Request) -> JSONResponse:
        refused = self._refuse_login(request)
        if refused is not None:
            return refused
        return JSONResponse(
            {"account_sid": self.account_sid, "balance": self.balance, "currency": self.currency}
        )

    def _refuse_login(self, request: Request) -> JSONResponse | None:
        expected = f"{self.account_sid}:{self.auth_token}"
        given = request.headers.get("authorization", "")
        scheme, _, encoded = given.partition(" ")
        try:
            login = base64.b64decode(encoded, validate=True).decode("utf-8")
        except ValueError:
            login = ""
        path_sid = request.path_params.get("account_sid", "")
        if (
            scheme.lower() != "basic"
            or not hmac.compare_digest(login.encode(), expected.encode())
            or path_sid != self.account_sid
        ):
            return _error(20003)
        return None

    # -- creating ------------------------------------------------------------------

    def _resource(self, sid: str, fields: dict[str, str]) -> dict[str, Any]:
        service = fields.get("MessagingServiceSid") or None
        now = formatdate(usegmt=False).replace("-0000", "+0000")
        path = f"{API.format(account_sid=self.account_sid)}/Messages/{sid}"
        return {
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "body": fields.get("Body", ""),
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": None if service else fields.get("From"),
            "messaging_service_sid": service,
            "num_media": "0",
            "num_segments": "0" if service else "1",
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "accepted" if service else "queued",
            "subresource_uris": {"media": f"{path}/Media.json"},
            "to": fields.get("To", ""),
            "uri": f"{path}.json",
            "_status_callback": fields.get("StatusCallback") or None,
        }

    async def _plan(self, sid: str, to: str) -> None:
        plan = self.status_plan_for(to) if self.status_plan_for else self.status_plan
        for status, error_code in plan:
            for _ in range(1 + self.duplicates):
                await self.push_status(sid, status, error_code)

    def _sid(self, prefix: str) -> str:
        return prefix + "".join(self._ids.choice("0123456789abcdef") for _ in range(32))

    # -- pushing -------------------------------------------------------------------

    async def _call_back(
        self, method: str, url: str, params: dict[str, str]
    ) -> httpx.Response | None:
        if method == "GET":
            # The parameters join the URL's own query (which carries smsgw's key), and
            # Twilio signs that whole URL with no POST parameters.
            target = str(httpx.URL(url).copy_merge_params(params))
            signed_url, signed_params = target, {}
        else:
            target, signed_url, signed_params = url, url, params
        headers = {
            "I-Twilio-Idempotency-Token": str(uuid.UUID(int=self._ids.getrandbits(128))),
            "User-Agent": "TwilioProxy/1.1",
        }
        if self.sign:
            token = self.auth_token if self.signing_token is None else self.signing_token
            headers["X-Twilio-Signature"] = twilio_signature(token, signed_url, signed_params)
        sent = {**params, **self.tamper}
        self.callbacks.append((method, target, sent, headers))
        try:
            if method == "GET":
                if self.tamper:
                    target = str(httpx.URL(url).copy_merge_params(sent))
                return await self._http.get(target, headers=headers)
            return await self._http.post(target, data=sent, headers=headers)
        except httpx.HTTPError:
            return None


def _form(content_type: str, body: bytes) -> dict[str, str]:
    """The create request's parameters; Twilio reads only a form body (JSON finds none)."""
    if content_type.split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
        return {}
    try:
        return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    except UnicodeDecodeError:
        return {}


def _validity_problem(validity: str | None) -> int | None:
    """Twilio's `ValidityPeriod`: whole seconds, 1 to 36,000 (error 21624)."""
    if validity is None:
        return None
    if not (validity.isascii() and validity.isdigit() and 1 <= int(validity) <= 36000):
        return 21624
    return None


def _problem(to: str, sender: str, service: str, body: str) -> int | None:
    """The Twilio error code a create request earns on its own, or None."""
    if not to:
        return 21604
    if not sender and not service:
        return 21603
    if not body:
        return 21602
    if len(body) > _MAX_BODY:
        return 21617
    if sender in MAGIC_FROM_ERRORS:
        return MAGIC_FROM_ERRORS[sender]
    if to in MAGIC_TO_ERRORS:
        return MAGIC_TO_ERRORS[to]
    if not _E164.fullmatch(to):
        return 21211
    return None


def _advance(resource: dict[str, Any], status: str, error_code: int | None) -> None:
    """Like Twilio, the resource shows the latest status, and a final one sticks."""
    if resource["status"] in _FINAL:
        return
    resource["status"] = status
    resource["date_updated"] = formatdate(usegmt=False).replace("-0000", "+0000")
    if status == "sent":
        resource["date_sent"] = resource["date_updated"]
        resource["price"] = "-0.00790"
    if error_code is not None:
        resource["error_code"] = error_code
        resource["error_message"] = None  # Twilio leaves it null for delivery errors


def _public(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if not k.startswith("_")}


def _error(code: int, *, status: int | None = None, **details: str) -> JSONResponse:
    http_status = status or ERROR_STATUS.get(code, 400)
    template = ERROR_MESSAGES.get(code, f"Twilio error {code}")
    body: dict[str, Any] = {
        "code": code,
        "message": template.format(**{"to": "", "sender": "", "path": "", **details}),
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": http_status,
    }
    if http_status == 401:
        body["detail"] = "Your AccountSid or AuthToken was incorrect."
    headers = {"Retry-After": "1"} if http_status == 429 else None
    return JSONResponse(body, status_code=http_status, headers=headers)
