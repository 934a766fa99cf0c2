"""A fake Infobip SMS API to test against over real HTTP.

It serves the documented endpoints on their documented paths, checks the API key the
way Infobip does (`Authorization: App <key>`), answers in the documented shapes, and
pushes delivery reports to the `notifyUrl` each message named, batched under
`results` as Infobip does.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.fake_server import FakeServer

Step = int | tuple[int, int]
"""A status ID, or (status ID, error ID), pushed as one delivery report."""
Plan = list[Step]


class _Code(NamedTuple):
    group_id: int
    group_name: str
    name: str
    description: str


# Infobip's general SMS status codes (Response status and error codes).
STATUSES: dict[int, _Code] = {
    26: _Code(1, "PENDING", "PENDING_ACCEPTED", "Message sent to next instance"),
    7: _Code(1, "PENDING", "PENDING_ENROUTE", "Message sent to next instance"),
    3: _Code(1, "PENDING", "PENDING_WAITING_DELIVERY", "Message sent, waiting for delivery report"),
    4: _Code(2, "UNDELIVERABLE", "UNDELIVERABLE_REJECTED_OPERATOR", "Message rejected by operator"),
    9: _Code(2, "UNDELIVERABLE", "UNDELIVERABLE_NOT_DELIVERED", "Message sent not delivered"),
    31: _Code(2, "UNDELIVERABLE", "UNDELIVERABLE_NOT_SENT", "Message not sent"),
    2: _Code(3, "DELIVERED", "DELIVERED_TO_OPERATOR", "Message delivered to operator"),
    5: _Code(3, "DELIVERED", "DELIVERED_TO_HANDSET", "Message delivered to handset"),
    15: _Code(4, "EXPIRED", "EXPIRED_EXPIRED", "Message expired"),
    29: _Code(4, "EXPIRED", "EXPIRED_DLR_UNKNOWN", "Message expired, delivery unknown"),
    6: _Code(5, "REJECTED", "REJECTED_NETWORK", "Network is forbidden"),
    8: _Code(5, "REJECTED", "REJECTED_PREFIX_MISSING", "Number prefix missing"),
    10: _Code(5, "REJECTED", "REJECTED_DND", "Destination on DND list"),
    11: _Code(5, "REJECTED", "REJECTED_SOURCE", "Invalid Source address"),
    12: _Code(5, "REJECTED", "REJECTED_NOT_ENOUGH_CREDITS", "Not enough credits"),
    13: _Code(5, "REJECTED", "REJECTED_SENDER", "Sender blocklisted"),
    14: _Code(5, "REJECTED", "REJECTED_DESTINATION_BLOCKLISTED", "Destination blocklisted"),
    17: _Code(5, "REJECTED", "REJECTED_PREPAID_PACKAGE_EXPIRED", "Prepaid package expired"),
    18: _Code(5, "REJECTED", "REJECTED_DESTINATION_NOT_REGISTERED", "Destination not registered"),
    19: _Code(5, "REJECTED", "REJECTED_ROUTE_NOT_AVAILABLE", "Route not available"),
    20: _Code(5, "REJECTED", "REJECTED_FLOODING_FILTER", "Rejected flooding"),
    21: _Code(5, "REJECTED", "REJECTED_SYSTEM_ERROR", "System error"),
    23: _Code(5, "REJECTED", "REJECTED_DUPLICATE_MESSAGE_ID", "Duplicate message id"),
    24: _Code(5, "REJECTED", "REJECTED_INVALID_UDH", "Invalid UDH"),
    25: _Code(5, "REJECTED", "REJECTED_MESSAGE_TOO_LONG", "Message too long"),
    51: _Code(5, "REJECTED", "MISSING_TO", "Missing to"),
    52: _Code(5, "REJECTED", "REJECTED_DESTINATION", "Invalid destination address"),
    87: _Code(5, "REJECTED", "SIGNALS_BLOCKED", "Rejected by anti-fraud"),
    100: _Code(5, "REJECTED", "UNDELIVERABLE_REJECTED_PLATFORM", "Rejected by platform"),
}
FINAL_GROUPS = frozenset({2, 4, 5})


class _Error(NamedTuple):
    group_id: int
    group_name: str
    name: str
    description: str
    permanent: bool


ERRORS: dict[int, _Error] = {
    0: _Error(0, "OK", "NO_ERROR", "No Error", False),
    1: _Error(1, "HANDSET_ERRORS", "EC_UNKNOWN_SUBSCRIBER", "Unknown Subscriber", True),
    27: _Error(1, "HANDSET_ERRORS", "EC_ABSENT_SUBSCRIBER", "Absent Subscriber", False),
    579: _Error(
        2, "USER_ERRORS", "EC_DEST_ADDRESS_NOT_IN_SMS_DEMO", "Destination not in demo list", True
    ),
    632: _Error(
        3,
        "OPERATOR_ERRORS",
        "EC_SMS_REJECTED_BY_MOBILE_OPERATOR",
        "SMS rejected by the mobile operator",
        True,
    ),
}
# The error a status carries when a plan step names none.
_DEFAULT_ERROR = {4: 632, 9: 1, 31: 1, 15: 27, 29: 27}

# Request-level errors per HTTP status: (legacy messageId, legacy text, newer errorCode,
# newer description), as the OpenAPI document's error responses give them.
_REQUEST_ERRORS: dict[int, tuple[str, str, str, str]] = {
    400: ("BAD_REQUEST", "Bad request", "E400", "Request cannot be processed."),
    401: (
        "UNAUTHORIZED",
        "Invalid login details",
        "E401",
        "The request lacks valid authentication credentials for the requested resource.",
    ),
    403: (
        "FORBIDDEN",
        "Forbidden",
        "E403",
        "Insufficient permissions to access the requested resource.",
    ),
    404: ("NOT_FOUND", "Not found", "E404", "Not found."),
    429: ("TOO_MANY_REQUESTS", "Too many requests", "E429", "Too many requests sent."),
    500: (
        "GENERAL_ERROR",
        "Something went wrong. Please contact support.",
        "E500",
        "Something went wrong.",
    ),
}


class FakeInfobip(FakeServer):
    """Infobip's SMS API on loopback: `async with serve(fake.app) as base_url: ...`.

    Endpoints: POST /sms/2/text/advanced (JSON; any number of messages, each with
    any number of destinations), GET /sms/3/logs and /sms/1/logs (`messageId`
    comma-separated or repeated, `bulkId`, `limit`), GET /account/1/balance. A wrong
    or missing `Authorization: App <key>` gets 401 UNAUTHORIZED; a malformed request
    400 BAD_REQUEST with `validationErrors`.

    Knobs and records (plain attributes):
    - `api_key`: the key the fake accepts.
    - `sent`: every accepted send request body. `requests_seen`: every send request
      that arrived, failed and hung ones included. `log_queries`: the message IDs
      each logs call asked for.
    - `messages`: messageId -> what the fake knows (`to`, `from`, `text`, `bulkId`,
      `notifyUrl`, `intermediateReport`, `callbackData`, current `status` and
      `error` objects, `sentAt`, `doneAt`); `bulks`: bulkId -> its messageIds.
    - `fail_next`: answers for the next send requests instead of accepting them, one
      per request, first first: an HTTP status (answered with Infobip's code for it:
      400 BAD_REQUEST, 401 UNAUTHORIZED, 403 FORBIDDEN, 404 NOT_FOUND, 429
      TOO_MANY_REQUESTS with `Retry-After: 1`, 5xx GENERAL_ERROR) or (status, code).
    - `error_shape`: "legacy" (`requestError.serviceException`, what /sms/2 answers)
      or "api" (the newer `errorCode`/`description`/`action`/`violations`).
    - `status_for`: optional callable(number as sent) -> a status ID to answer for
      that destination at submission (any of `STATUSES`), or None for the rules:
      numbers that are not 6..15 digits get 52 REJECTED_DESTINATION, senders in
      `blocked_senders` 13 REJECTED_SENDER, an account whose `credit` is below
      `price` 12 REJECTED_NOT_ENOUGH_CREDITS, a reused destination messageId 23
      REJECTED_DUPLICATE_MESSAGE_ID, anything else `accept_status` (26
      PENDING_ACCEPTED; 7 for the older PENDING_ENROUTE answers).
    - `credit`, `currency`, `price`: the balance, charged `price` per accepted SMS.
    - `hang_next`: how many upcoming send requests are accepted (recorded, reports
      scheduled) but answered only after `hang_seconds` (default 5.0);
      `release_hung()` answers the requests hanging now.
    - `dlr_plan`: steps pushed per accepted destination, default `[5]`
      (DELIVERED_TO_HANDSET); a step is a status ID or (status ID, error ID from
      `ERRORS`). PENDING steps are pushed only to messages that asked for
      `intermediateReport`, as Infobip does. `dlr_plan_for`: optional
      callable(number) -> plan overriding it per destination.
    - `report_rejected`: also push a report for destinations refused at submission.
    - `push_reports`: False keeps every report to the logs (statuses advance on plan,
      nothing is pushed), as for a customer who polls instead of taking webhooks.
    - `dlr_url`: where reports go for messages without a `notifyUrl` (the account's
      subscription webhook); None: nowhere, but statuses still advance.
    - `dlr_batch_size`: results per push (Infobip sends up to 100).
    - `dlr_before_response`: push a send's reports, and wait for their answers,
      before answering the send request.
    - `duplicates`: extra copies of each report. `shuffle`: push a send's reports in
      an order drawn from `random`, a `random.Random(seed)`.
    - `dlr_acks`: the HTTP status our callback answered to each push, in push order;
      0 when the callback could not be reached.
    - `inbound_url`: where `push_inbound` posts (the number's forwarding URL).

    Pushes made after a send's answer run as background tasks; `drain()` waits for all
    of them. The app's lifespan owns the one httpx client used for pushing.
    """

    def __init__(self, api_key: str, *, seed: int = 0) -> None:
        self.api_key = api_key
        self.log_queries: list[list[str]] = []
        self.messages: dict[str, dict[str, Any]] = {}
        self.bulks: dict[str, list[str]] = {}
        self.fail_next: list[int | tuple[int, str]] = []
        self.error_shape = "legacy"
        self.status_for: Callable[[str], int | None] | None = None
        self.blocked_senders: set[str] = set()
        self.accept_status = 26
        self.credit = 1000.0
        self.currency = "EUR"
        self.price = 0.01
        self.dlr_plan: Plan = [5]
        self.dlr_plan_for: Callable[[str], Plan] | None = None
        self.report_rejected = False
        self.push_reports = True
        self.dlr_batch_size = 100
        self.shuffle = False
        self.random = random.Random(seed)
        self._ids = random.Random(f"ids-{seed}")
        super().__init__(
            [
                Route("/sms/2/text/advanced", self._send, methods=["POST"]),
                Route("/sms/3/logs", self._logs_v3, methods=["GET"]),
                Route("/sms/1/logs", self._logs_v1, methods=["GET"]),
                Route("/account/1/balance", self._balance, methods=["GET"]),
            ]
        )

    # -- test controls -------------------------------------------------------------

    async def push_dlr(self, message_id: str, status_id: int, error_id: int | None = None) -> int:
        """Push one report for a known message now; returns the callback's HTTP status."""
        report = self._step_report(message_id, status_id, error_id)
        target = self.messages[message_id]["notifyUrl"] or self.dlr_url
        if target is None:
            return 0
        return await self._post_results(target, [report])

    async def push_inbound(
        self, frm: str, to: str, text: str, *, keyword: str = "", message_id: str = ""
    ) -> int:
        """Post an inbound SMS to `inbound_url`; returns the callback's HTTP status."""
        if self.inbound_url is None:
            raise RuntimeError("set inbound_url before pushing inbound messages")
        clean = text
        if keyword and text.upper().startswith(keyword.upper()):
            clean = text[len(keyword) :].lstrip()
        result: dict[str, Any] = {
            "messageId": message_id or self._message_id(),
            "from": frm,
            "to": to,
            "text": text,
            "cleanText": clean,
            "keyword": keyword,
            "receivedAt": _stamp(),
            "smsCount": 1,
            "price": {"pricePerMessage": 0, "currency": self.currency},
            "callbackData": None,
        }
        body = {"results": [result], "messageCount": 1, "pendingMessageCount": 0}
        return await self._deliver(self.inbound_url, "json", body)

    # -- endpoints -----------------------------------------------------------------

    async def _send(self, request: Request) -> JSONResponse:
        self.requests_seen += 1
        if self.fail_next:
            planned = self.fail_next.pop(0)
            status, code = planned if isinstance(planned, tuple) else (planned, "")
            return self._error(status, code=code)
        if not self._authorized(request):
            return self._error(401)
        try:
            body = await request.json()
        except ValueError:
            return self._error(400, text="Invalid JSON")
        problems = _problems(body)
        if problems:
            return self._error(400, validation=problems)
        answers, pushes = self._accept(body)
        self.sent.append(body)
        await self._answer_after(self._push_all(pushes))
        return JSONResponse(answers)

    async def _logs_v3(self, request: Request) -> JSONResponse:
        return self._logs(request, version=3)

    async def _logs_v1(self, request: Request) -> JSONResponse:
        return self._logs(request, version=1)

    def _logs(self, request: Request, *, version: int) -> JSONResponse:
        if not self._authorized(request):
            return self._error(401, api=version == 3)
        params = request.query_params
        wanted = [i for v in params.getlist("messageId") for i in v.split(",") if i.strip()]
        bulks = [b for v in params.getlist("bulkId") for b in v.split(",") if b.strip()]
        limit_text = params.get("limit", "50")
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= 1000:
            return self._error(400, text="limit must be between 1 and 1000", api=version == 3)
        self.log_queries.append(wanted)
        chosen = [i for i in wanted if i in self.messages]
        for bulk in bulks:
            chosen.extend(i for i in self.bulks.get(bulk, []) if i not in chosen)
        if not wanted and not bulks:
            chosen = list(self.messages)
        results = [self._log(i, version) for i in chosen[: int(limit_text)]]
        return JSONResponse({"results": results})

    async def _balance(self, request: Request) -> JSONResponse:
        if not self._authorized(request):
            return self._error(401)
        return JSONResponse({"balance": round(self.credit, 5), "currency": self.currency})

    # -- accepting -----------------------------------------------------------------

    def _accept(self, body: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, Step]]]:
        bulk_id = body.get("bulkId") or self._message_id()
        answers = []
        pushes: list[tuple[str, Step]] = []
        for message in body["messages"]:
            for destination in message["destinations"]:
                number = destination["to"]
                message_id = destination.get("messageId") or self._message_id()
                status_id = self._submission_status(message, destination)
                if STATUSES[status_id].group_id not in FINAL_GROUPS:
                    self.credit -= self.price
                self._record(message_id, bulk_id, message, number, status_id)
                answers.append(
                    {"to": number, "status": _status(status_id), "messageId": message_id}
                )
                if STATUSES[status_id].group_id in FINAL_GROUPS:
                    # A reused messageId names the first message: nothing to report.
                    if self.report_rejected and status_id != 23:
                        pushes.append((message_id, status_id))
                    continue
                plan = self.dlr_plan_for(number) if self.dlr_plan_for else self.dlr_plan
                for step in plan:
                    step_id = step[0] if isinstance(step, tuple) else step
                    if STATUSES[step_id].group_id == 1 and not message.get("intermediateReport"):
                        continue
                    pushes.extend([(message_id, step)] * (1 + self.duplicates))
        if self.shuffle:
            self.random.shuffle(pushes)
        return {"bulkId": bulk_id, "messages": answers}, pushes

    def _submission_status(self, message: dict[str, Any], destination: dict[str, Any]) -> int:
        number = destination["to"]
        chosen = self.status_for(number) if self.status_for else None
        if chosen is not None:
            return chosen
        if not (number.isdigit() and 6 <= len(number) <= 15):
            return 52
        if message.get("from") in self.blocked_senders:
            return 13
        if self.credit < self.price:
            return 12
        if destination.get("messageId") in self.messages:
            return 23
        return self.accept_status

    def _record(
        self,
        message_id: str,
        bulk_id: str,
        message: dict[str, Any],
        number: str,
        status_id: int,
    ) -> None:
        if message_id in self.messages:
            # A reused messageId keeps the first message's record, as Infobip does.
            return
        self.messages[message_id] = {
            "to": number,
            "from": message.get("from", ""),
            "text": message["text"],
            "bulkId": bulk_id,
            "notifyUrl": message.get("notifyUrl"),
            "intermediateReport": bool(message.get("intermediateReport")),
            "callbackData": message.get("callbackData"),
            "status": _status(status_id),
            "error": _error_object(0),
            "sentAt": _stamp(),
            "doneAt": None,
        }
        self.bulks.setdefault(bulk_id, []).append(message_id)

    def _message_id(self) -> str:
        return "".join(self._ids.choice("0123456789") for _ in range(19)).lstrip("0") or "1"

    def _authorized(self, request: Request) -> bool:
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "app" and key.strip() == self.api_key

    # -- reports -------------------------------------------------------------------

    def _advance(self, known: dict[str, Any], status_id: int, error_id: int | None) -> None:
        """Like Infobip's logs, the latest status shows, but a final one sticks."""
        current = known["status"]
        if current["groupId"] in FINAL_GROUPS or (current["groupId"] == 3 and current["id"] == 5):
            return
        known["status"] = _status(status_id)
        chosen = error_id if error_id is not None else _DEFAULT_ERROR.get(status_id, 0)
        known["error"] = _error_object(chosen)
        if STATUSES[status_id].group_id != 1:
            known["doneAt"] = _stamp()

    def _step_report(self, message_id: str, status_id: int, error_id: int | None) -> dict[str, Any]:
        """Advance the message and build the report of this step.

        The report says what the step says even when the message's status is already
        final and stays (duplicated and shuffled reports arrive that way).
        """
        known = self.messages[message_id]
        self._advance(known, status_id, error_id)
        chosen = error_id if error_id is not None else _DEFAULT_ERROR.get(status_id, 0)
        report: dict[str, Any] = {
            "bulkId": known["bulkId"],
            "messageId": message_id,
            "to": known["to"],
            "sentAt": known["sentAt"],
            "doneAt": known["doneAt"] or _stamp(),
            "smsCount": 1,
            "price": {"pricePerMessage": self.price, "currency": self.currency},
            "status": _status(status_id),
            "error": _error_object(chosen),
        }
        if known["callbackData"] is not None:
            report["callbackData"] = known["callbackData"]
        return report

    def _log(self, message_id: str, version: int) -> dict[str, Any]:
        known = self.messages[message_id]
        common = {
            "bulkId": known["bulkId"],
            "messageId": message_id,
            "sentAt": known["sentAt"],
            "doneAt": known["doneAt"],
            "price": {"pricePerMessage": self.price, "currency": self.currency},
            "status": dict(known["status"]),
            "error": dict(known["error"]),
        }
        if version == 1:
            return {
                "to": known["to"],
                "from": known["from"],
                "text": known["text"],
                "smsCount": 1,
                "mccMnc": "22801",
                **common,
            }
        return {
            "destination": known["to"],
            "sender": known["from"],
            "messageCount": 1,
            "content": {"text": known["text"]},
            "mccMnc": "22801",
            **common,
        }

    async def _push_all(self, pushes: list[tuple[str, Step]]) -> None:
        """Push reports in order, each run of one target batched up to dlr_batch_size."""
        batch: list[dict[str, Any]] = []
        batch_target: str | None = None
        for message_id, step in pushes:
            status_id, error_id = step if isinstance(step, tuple) else (step, None)
            report = self._step_report(message_id, status_id, error_id)
            target = self.messages[message_id]["notifyUrl"] or self.dlr_url
            if batch and (target != batch_target or len(batch) >= self.dlr_batch_size):
                await self._flush(batch_target, batch)
                batch = []
            batch_target = target
            batch.append(report)
        if batch:
            await self._flush(batch_target, batch)

    async def _flush(self, target: str | None, results: list[dict[str, Any]]) -> None:
        if target is not None and self.push_reports:
            await self._post_results(target, results)

    async def _post_results(self, target: str, results: list[dict[str, Any]]) -> int:
        status = await self._deliver(target, "json", {"results": results})
        self.dlr_acks.append(status)
        return status

    # -- errors --------------------------------------------------------------------

    def _error(
        self,
        status: int,
        *,
        code: str = "",
        text: str = "",
        validation: dict[str, list[str]] | None = None,
        api: bool | None = None,
    ) -> JSONResponse:
        legacy_id, legacy_text, api_code, api_text = _REQUEST_ERRORS.get(
            status, _REQUEST_ERRORS[500] if status >= 500 else _REQUEST_ERRORS[400]
        )
        headers = {"Retry-After": "1"} if status == 429 else None
        use_api = self.error_shape == "api" if api is None else api
        if use_api:
            body: dict[str, Any] = {
                "errorCode": code or api_code,
                "description": text or api_text,
                "action": "Check the request and try again.",
                "violations": [
                    {"property": prop, "violation": problem}
                    for prop, problems in (validation or {}).items()
                    for problem in problems
                ],
                "resources": [],
            }
        else:
            exception: dict[str, Any] = {
                "messageId": code or legacy_id,
                "text": text or legacy_text,
            }
            if validation:
                exception["validationErrors"] = validation
            body = {"requestError": {"serviceException": exception}}
        return JSONResponse(body, status_code=status, headers=headers)


def _problems(body: Any) -> dict[str, list[str]]:
    """Infobip-style validationErrors for a malformed send request ({} when fine)."""
    if not isinstance(body, dict):
        return {"request": ["must be a JSON object"]}
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return {"messages": ["must not be empty"]}
    problems: dict[str, list[str]] = {}
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            problems[where] = ["must be an object"]
            continue
        destinations = message.get("destinations")
        if not isinstance(destinations, list) or not destinations:
            problems[f"{where}.destinations"] = ["must not be empty"]
        else:
            for j, destination in enumerate(destinations):
                if not isinstance(destination, dict) or not isinstance(destination.get("to"), str):
                    problems[f"{where}.destinations[{j}].to"] = ["must not be null"]
        text = message.get("text")
        if not isinstance(text, str) or not text.strip():
            problems[f"{where}.text"] = ["must not be blank"]
        elif len(text.encode("utf-8")) > 4000:
            problems[f"{where}.text"] = ["size must be between 1 and 4000"]
        sender = message.get("from")
        if sender is not None and (not isinstance(sender, str) or not sender.strip()):
            problems[f"{where}.from"] = ["must not be blank"]
        content_type = message.get("notifyContentType")
        if content_type is not None and content_type not in ("application/json", "application/xml"):
            problems[f"{where}.notifyContentType"] = ["must be application/json or application/xml"]
        validity = message.get("validityPeriod")
        # Whole minutes; Infobip caps anything past 48 hours at 48 hours itself.
        if validity is not None and (
            isinstance(validity, bool) or not isinstance(validity, int) or validity < 1
        ):
            problems[f"{where}.validityPeriod"] = ["must be a number of minutes, at least 1"]
    return problems


def _described(code: _Code | _Error, code_id: int) -> dict[str, Any]:
    """A status or error code as Infobip's answers and reports spell it out."""
    return {
        "groupId": code.group_id,
        "groupName": code.group_name,
        "id": code_id,
        "name": code.name,
        "description": code.description,
    }


def _status(status_id: int) -> dict[str, Any]:
    return _described(STATUSES[status_id], status_id)


def _error_object(error_id: int) -> dict[str, Any]:
    error = ERRORS[error_id]
    return {**_described(error, error_id), "permanent": error.permanent}


def _stamp() -> str:
    """Infobip's timestamp format, e.g. 2019-11-09T16:00:00.000+0000."""
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}+0000"
