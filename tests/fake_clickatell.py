"""A fake Clickatell Platform (SMS REST integration) to test against over real HTTP.

It serves the endpoints `ClickatellHandler` speaks, on their documented paths, checks
the API key the way Clickatell does (the raw key in `Authorization`, no scheme), and
answers in Clickatell's shapes. Status and reply callbacks are pushed to URLs set on
the fake, as Clickatell pushes them to the URLs configured on the integration.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.fake_server import FakeServer

# Code -> (name in `status`, text in `statusDescription`), as Clickatell documents them.
STATUS_NAMES: dict[int, tuple[str, str]] = {
    1: ("MESSAGE_UNKNOWN", "Message unknown"),
    2: ("MESSAGE_QUEUED", "Message queued"),
    3: ("DELIVERED_TO_GATEWAY", "Delivered to gateway"),
    4: ("RECEIVED_BY_RECIPIENT", "Received by recipient"),
    5: ("ERROR_WITH_MESSAGE", "Error with message"),
    6: ("USER_CANCELLED_MESSAGE_DELIVERY", "User cancelled message delivery"),
    7: ("ERROR_DELIVERING_MESSAGE", "Error delivering message"),
    8: ("MESSAGE_RECEIVED_BY_GATEWAY", "Message received by gateway"),
    9: ("ROUTING_ERROR", "Routing error"),
    10: ("MESSAGE_EXPIRED", "Message expired"),
    11: ("MESSAGE_SCHEDULED", "Message scheduled for later delivery"),
    12: ("OUT_OF_CREDIT", "Out of credit"),
    13: ("CLICKATELL_CANCELLED_MESSAGE_DELIVERY", "Clickatell cancelled message delivery"),
    14: ("MAXIMUM_MT_LIMIT_EXCEEDED", "Maximum MT limit exceeded"),
}
_FINAL_CODES = frozenset({4, 5, 6, 7, 9, 10, 12, 13, 14})
# Code -> (error, errorDescription, HTTP status when it rejects a whole request).
ERRORS: dict[int, tuple[str, str, int]] = {
    1: ("Authentication failed", "Authentication details are incorrect.", 401),
    2: ("Unknown username or password", "Unknown user name or incorrect password.", 401),
    3: ("Session ID expired", "The session ID has expired.", 401),
    4: ("Account frozen", "The account is frozen.", 401),
    5: ("Missing session ID", "Missing session ID attribute in request.", 401),
    7: ("IP lockdown violation", "The request came from an IP address not allowed.", 401),
    100: ("Data malformed", "The JSON/XML data submitted is invalid.", 400),
    101: ("Invalid or missing parameters", "One or more parameters are missing or invalid.", 400),
    102: ("Invalid user data header", "The format of the user data header is incorrect.", 400),
    103: ("Unknown API message ID", "The API message ID is unknown.", 404),
    104: ("Unknown client message ID", "The client message ID does not exist.", 404),
    105: ("Invalid destination address", "The destination address is invalid.", 400),
    106: ("Invalid source address", "The sender address that is specified is incorrect.", 400),
    107: ("Empty message", "The message has no content.", 400),
    108: ("Invalid or missing API ID", "The API ID is incorrect or missing.", 401),
    109: ("Missing message ID", "A client or API message ID is missing.", 400),
    110: ("Error with email message", "The email message could not be processed.", 400),
    111: ("Invalid protocol", "The protocol is not supported.", 400),
    112: ("Invalid message type", "The message type is not supported.", 400),
    113: ("Maximum message parts exceeded", "The message has too many parts.", 400),
    114: ("Cannot route message", "The gateway is not routing to this network prefix.", 400),
    115: ("Message expired", "The message expired before it reached the gateway.", 400),
    116: ("Invalid Unicode data", "The format of the unicode data is incorrect.", 400),
    120: ("Invalid delivery time", "The format of the delivery time is incorrect.", 400),
    121: ("Destination mobile number blocked", "This number is on the block list.", 400),
    122: ("Destination mobile opted out", "The user has opted out.", 400),
    123: ("Invalid Sender ID", "The sender ID is not registered and approved.", 400),
    128: ("Number delisted", "The number has been delisted.", 400),
    130: ("Maximum MT limit exceeded", "The MT limit was exceeded until 1767225600.", 400),
    201: ("Invalid batch ID", "The batch ID is not valid.", 400),
    202: ("No batch template", "The batch template has not been defined.", 400),
    301: ("No credit left", "Insufficient credits.", 402),
    302: ("Max allowed credit", "The maximum allowed credit was reached.", 402),
    901: ("Internal error", "Please retry.", 503),
}
MAX_RECIPIENTS = 200


class FakeClickatell(FakeServer):
    """Clickatell's Platform API on loopback: `async with serve(fake.app) as base_url`.

    Endpoints (all take the API key as the raw `Authorization` header; a missing or
    wrong key gets 401 with error 001, checked before anything else):
    - POST /messages: JSON `{"content", "to": [numbers], "from"?, "clientMessageId"?,
      "validityPeriod"?}`; 202 with one `{apiMessageId, accepted, to, errorCode, error,
      errorDescription}` entry per number. A malformed body gets 400 with 100 or 101
      (more than 200 numbers, a number twice, missing content...), an empty content 107.
      A number that is not 8-15 international digits is refused in its entry with 105.
    - GET /public-client/message/status?messageId=: `{messageId, status, statusCode,
      statusDescription, timestamp}` (the latest status; a final one sticks), 404 with
      error 103 for an unknown ID.
    - GET /public-client/balance: `{"balance", "currency"}`.

    Knobs and records (plain attributes):
    - `api_key`: the key accepted. `integration_name`: what callbacks carry.
    - `sent`: the JSON body of every accepted send request; `requests_seen`: every
      send request that arrived, failed and refused ones included.
    - `messages`: apiMessageId -> `{to, from, content, clientMessageId, statusCode,
      timestamp}`.
    - `fail_next`: HTTP statuses answered to the next send requests instead, one per
      request, first first (e.g. `[503, 429]`); nothing is accepted. A 429 carries
      `Retry-After: 1`; a 503 carries error 901.
    - `error_next`: Clickatell error codes (any of `ERRORS`) answered to the next send
      requests at the top level, with that error's HTTP status; nothing is accepted.
    - `number_errors`: number (digits, as sent) -> error code refused in its entry.
    - `sender_ids`: the `from` values allowed (None: any); others are refused in every
      entry with 123 (Invalid Sender ID).
    - `balance`, `currency`: what the balance call answers.
    - `dlr_url`: where status callbacks go (None: nowhere; statuses still advance).
      `dlr_format`: "json" (POST, the default) or "get" (query appended to the URL's).
      `dlr_fields`: "current" (statusCode as a number, status as a name, the
      description as text), "legacy" (`apiMessageId`, statusCode as "004" text, no
      name) or "names" (no statusCode; the name in statusDescription, as integrators
      have seen in traffic).
    - `dlr_plan`: status codes pushed per number after each accepted send, default
      `[3, 4]`; `dlr_plan_for`: optional callable(number) -> plan overriding it.
    - `dlr_before_response`: push (and await) a send's callbacks before answering it.
    - `duplicates`: extra copies of each callback pushed.
    - `dlr_acks`: the HTTP status our callback answered each push (0: unreachable).
    - `inbound_url`: where `push_inbound` posts reply callbacks (JSON).

    Pushes made after a send's answer run as background tasks; `drain()` awaits them.
    The app's lifespan owns the httpx client used to push.
    """

    def __init__(self, api_key: str, *, seed: int = 0) -> None:
        self.api_key = api_key
        self.integration_name = "smsgw"
        self.messages: dict[str, dict[str, Any]] = {}
        self.fail_next: list[int] = []
        self.error_next: list[int] = []
        self.number_errors: dict[str, int] = {}
        self.sender_ids: set[str] | None = None
        self.balance = 1234.5
        self.currency = "USD"
        self.dlr_format = "json"
        self.dlr_fields = "current"
        self.dlr_plan: list[int] = [3, 4]
        self.dlr_plan_for: Callable[[str], list[int]] | None = None
        self._ids = random.Random(f"ids-{seed}")
        super().__init__(
            [
                Route("/messages", self._send, methods=["POST"]),
                Route("/public-client/message/status", self._status, methods=["GET"]),
                Route("/public-client/balance", self._balance, methods=["GET"]),
            ]
        )

    # -- test controls -------------------------------------------------------------

    async def push_dlr(self, message_id: str, to: str, code: int) -> int:
        """Push one status callback; returns the callback's HTTP status (0: no answer)."""
        known = self.messages.get(message_id)
        if known is not None and known["statusCode"] not in _FINAL_CODES:
            known["statusCode"], known["timestamp"] = code, _millis()
        if self.dlr_url is None:
            return 0
        fields = self._dlr_fields(message_id, to, code, known or {})
        status = await self._deliver(self.dlr_url, self.dlr_format, fields)
        self.dlr_acks.append(status)
        return status

    async def push_inbound(self, from_number: str, to_number: str, text: str) -> int:
        """Post a reply (MO) callback to `inbound_url`; returns the callback's status."""
        if self.inbound_url is None:
            raise RuntimeError("set inbound_url before pushing inbound messages")
        fields = {
            "integrationId": "b4a3c0de0001",
            "integrationName": self.integration_name,
            "messageId": self._message_id(),
            "replyMessageId": next(iter(self.messages), ""),
            "apiKey": self.api_key,
            "fromNumber": from_number,
            "toNumber": to_number,
            "timestamp": _millis(),
            "text": text,
            "charset": "UTF-8",
            "udh": "",
            "network": 0,
            "keyword": text.split()[0].upper() if text.split() else "",
        }
        return await self._deliver(self.inbound_url, "json", fields)

    # -- endpoints -----------------------------------------------------------------

    async def _send(self, request: Request) -> JSONResponse:
        self.requests_seen += 1
        if not self._authorized(request):
            return _error(1)
        if self.fail_next:
            return _failure(self.fail_next.pop(0))
        if self.error_next:
            return _error(self.error_next.pop(0))
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            return _error(100, f"unsupported content type {content_type!r}")
        try:
            body = json.loads(await request.body())
        except ValueError:
            return _error(100)
        if not isinstance(body, dict):
            return _error(100, "the body must be a JSON object")
        problem = _problem(body)
        if problem:
            return _error(*problem)
        self.sent.append(body)
        entries, pushes = [], []
        for number in body["to"]:
            refusal = self._refusal(number, body.get("from"))
            if refusal:
                error, description, _ = ERRORS[refusal]
                entries.append(
                    {
                        "apiMessageId": "",
                        "accepted": False,
                        "to": number,
                        "errorCode": refusal,
                        "error": error,
                        "errorDescription": description,
                    }
                )
                continue
            message_id = self._message_id()
            self.messages[message_id] = {
                "to": number,
                "from": body.get("from", ""),
                "content": body["content"],
                "clientMessageId": body.get("clientMessageId", ""),
                "statusCode": 2,
                "timestamp": _millis(),
            }
            entries.append(
                {
                    "apiMessageId": message_id,
                    "accepted": True,
                    "to": number,
                    "errorCode": None,
                    "error": None,
                    "errorDescription": None,
                }
            )
            plan = self.dlr_plan_for(number) if self.dlr_plan_for else self.dlr_plan
            for code in plan:
                pushes.extend([(message_id, number, code)] * (1 + self.duplicates))
        await self._answer_after(self._push_all(pushes))
        answer = {"messages": entries, "errorCode": None, "error": None, "errorDescription": None}
        return JSONResponse(answer, status_code=202)

    async def _status(self, request: Request) -> JSONResponse:
        if not self._authorized(request):
            return _error(1)
        message_id = request.query_params.get("messageId", "").strip()
        if not message_id:
            return _error(109)
        known = self.messages.get(message_id)
        if known is None:
            return _error(103)
        name, description = STATUS_NAMES[known["statusCode"]]
        return JSONResponse(
            {
                "messageId": message_id,
                "status": name,
                "statusCode": known["statusCode"],
                "statusDescription": description,
                "timestamp": known["timestamp"],
            }
        )

    async def _balance(self, request: Request) -> JSONResponse:
        if not self._authorized(request):
            return _error(1)
        return JSONResponse({"balance": self.balance, "currency": self.currency})

    # -- helpers -------------------------------------------------------------------

    def _authorized(self, request: Request) -> bool:
        return request.headers.get("authorization") == self.api_key

    def _refusal(self, number: str, sender: Any) -> int:
        if number in self.number_errors:
            return self.number_errors[number]
        if not (number.isdigit() and 8 <= len(number) <= 15 and not number.startswith("0")):
            return 105
        if self.sender_ids is not None and sender is not None and sender not in self.sender_ids:
            return 123
        return 0

    def _message_id(self) -> str:
        return "".join(self._ids.choice("0123456789abcdef") for _ in range(32))

    def _dlr_fields(
        self, message_id: str, to: str, code: int, known: dict[str, Any]
    ) -> dict[str, Any]:
        name, description = STATUS_NAMES.get(code, ("", ""))
        common = {"to": to, "from": known.get("from", ""), "timestamp": _millis()}
        if self.dlr_fields == "legacy":
            return {
                "apiMessageId": message_id,
                **common,
                "statusCode": f"{code:03d}",
                "statusDescription": description,
            }
        if self.dlr_fields == "names":
            return {
                "integrationName": self.integration_name,
                "messageId": message_id,
                "clientMessageId": known.get("clientMessageId", ""),
                **common,
                "statusDescription": name,
            }
        return {
            "integrationName": self.integration_name,
            "messageId": message_id,
            "requestId": message_id[:8] + "-req",
            "clientMessageId": known.get("clientMessageId", ""),
            **common,
            "statusCode": code,
            "status": name,
            "statusDescription": description,
        }

    async def _push_all(self, pushes: list[tuple[str, str, int]]) -> None:
        for push in pushes:
            await self.push_dlr(*push)


def _problem(body: dict[str, Any]) -> tuple[int, str] | None:
    """Why a send request is malformed (error code, description), or None."""
    content, to, sender = body.get("content"), body.get("to"), body.get("from")
    if content is None or not isinstance(content, str):
        return 101, "content is required and must be text"
    if not content:
        return 107, "The message has no content."
    if not isinstance(to, list) or not to or not all(isinstance(n, str) for n in to):
        return 101, "to must be a list of numbers"
    if len(to) > MAX_RECIPIENTS:
        return 101, f"at most {MAX_RECIPIENTS} recipients per request"
    if len(set(to)) != len(to):
        return 101, "to must not repeat a number"
    if sender is not None and not isinstance(sender, str):
        return 101, "from must be text"
    validity = body.get("validityPeriod")  # minutes
    if validity is not None and (
        isinstance(validity, bool) or not isinstance(validity, int) or validity < 1
    ):
        return 101, "validityPeriod must be a whole number of minutes, at least 1"
    return None


def _error(code: int, description: str = "") -> JSONResponse:
    error, default, status = ERRORS[code]
    headers = {"Retry-After": "1"} if status == 503 else None
    return JSONResponse(
        {
            "messages": [],
            "errorCode": code,
            "error": error,
            "errorDescription": description or default,
        },
        status_code=status,
        headers=headers,
    )


def _failure(status: int) -> JSONResponse:
    if status == 503:
        return _error(901)
    headers = {"Retry-After": "1"} if status == 429 else None
    return JSONResponse(
        {"messages": [], "errorCode": None, "error": f"HTTP {status}", "errorDescription": None},
        status_code=status,
        headers=headers,
    )


def _millis() -> int:
    return time.time_ns() // 1_000_000
