"""A fake Connectel SMS Gateway (API v2) to test against over real HTTP.

It serves the reference's endpoints on their documented paths and answers in the
documented shapes, and it pushes delivery reports to a callback URL the way
Connectel does: configured per token, not per request.
"""

from __future__ import annotations

import json
import random
import string
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.fake_server import FakeServer

Plan = list[tuple[int, str]]

_ID_CHARS = string.ascii_uppercase + string.digits
_FINAL_CODES = frozenset({1, 2, 5, 8, 9})
_MAX_MESSAGE_CHARS = 1600


class FakeConnectel(FakeServer):
    """Connectel's API on loopback: `async with serve(fake.app) as base_url: ...`.

    Endpoints: POST /api/v2/send/ (JSON or form; one recipient, or bulk with
    `recipient` a list of `{key: number}` objects and `bulk: true`; in form bulk,
    `recipient` is that list as JSON text, as `ConnectelHandler` sends it) and
    GET /api/v2/delivery/?authorization=&requestid= (a request ID or a bulk ID).
    A wrong or missing token gets 401 `{"error", "message"}`; a malformed request 400.

    Knobs and records (plain attributes):
    - `token`: the token the fake accepts; `token_id` is what DLRs carry as `tokenid`.
    - `sent`: every accepted send request as parsed (dict; form bulk `recipient`
      decoded from its JSON text). `requests_seen`: every send request that arrived,
      failed, refused and hung ones included.
    - `messages`: request ID -> what the fake knows about it (`recipient`, `sender`,
      `message`, `key`, `bulkid`, current `statusInt` / `statusStr`, `date`);
      `bulks`: bulk ID -> its request IDs in request order.
    - `fail_next`: HTTP statuses to answer the next send requests with instead, one
      per request, first first (e.g. `[503, 429]`); nothing is accepted or recorded in
      `sent`. A 429 carries `Retry-After: <retry_after>` (default "1").
    - `hang_next`: how many upcoming send requests are accepted (IDs assigned,
      recorded in `sent`, DLRs scheduled) but answered only after `hang_seconds`
      (default 5.0), so that a client timeout leaves the outcome unknown.
      `release_hung()` answers the requests hanging now at once. The server waits
      for hung requests when it stops, so release them (or keep `hang_seconds`
      short) before leaving `serve`.
    - `dlr_url`: where DLRs are pushed (None: nowhere, but statuses still advance).
      `dlr_format`: "json" (default), "form" (POST fields) or "get" (query).
    - `dlr_plan`: (statusInt, statusStr) steps pushed per recipient after each accepted
      send, default `[(0, "ENROUTE"), (1, "DELIVRD")]`. `dlr_plan_for`: optional
      callable(number) -> plan that overrides it per recipient (number as sent).
    - `dlr_before_response`: push the DLRs of a send, and wait for their answers,
      before answering the send request (the report racing ahead of the ID).
      `early_dlrs`: the share (0 to 1) of sends, drawn from `random`, treated so.
    - `duplicates`: extra copies of each DLR pushed (0: each once).
    - `shuffle`: push the DLRs of one send in an order drawn from `random`, a
      `random.Random(seed)`; otherwise recipient by recipient, plan order.
    - `dlr_acks`: the HTTP status our callback answered to each push made to
      `dlr_url`, in push order; 0 when the callback could not be reached.
    - `inbound_url` / `inbound_format` ("json" or "form"): where `push_inbound` posts.

    Pushes made after a send's answer run as background tasks; `drain()` waits for all
    of them. The app's lifespan owns the one httpx client used for pushing.
    """

    def __init__(self, token: str, *, seed: int = 0) -> None:
        self.token = token
        self.token_id = "4711"
        self.messages: dict[str, dict[str, Any]] = {}
        self.bulks: dict[str, list[str]] = {}
        self.fail_next: list[int] = []
        self.retry_after = "1"
        self.dlr_format = "json"
        self.dlr_plan: Plan = [(0, "ENROUTE"), (1, "DELIVRD")]
        self.dlr_plan_for: Callable[[str], Plan] | None = None
        self.early_dlrs = 0.0
        self.shuffle = False
        self.random = random.Random(seed)
        self.inbound_format = "json"
        self._ids = random.Random(f"ids-{seed}")
        super().__init__(
            [
                Route("/api/v2/send/", self._send, methods=["POST"]),
                Route("/api/v2/delivery/", self._delivery, methods=["GET"]),
            ]
        )

    # -- test controls -------------------------------------------------------------

    async def push_dlr(
        self, requestid: str, recipient: str, status_int: int, status_str: str
    ) -> int:
        """Push one DLR to `dlr_url`; returns the callback's HTTP status (0: no answer)."""
        known = self.messages.get(requestid)
        if known is not None:
            _advance(known, status_int, status_str)
        fields: dict[str, Any] = {
            "action": "dlr",
            "requestid": requestid,
            "tokenid": self.token_id,
            "statusInt": status_int,
            "statusStr": status_str,
            "sender": known["sender"] if known else "",
            "recipient": recipient,
        }
        if self.dlr_url is None:
            return 0
        status = await self._deliver(self.dlr_url, self.dlr_format, fields)
        self.dlr_acks.append(status)
        return status

    async def push_inbound(self, frm: str, to: str, message: str, requestid: str = "") -> int:
        """Post an inbound SMS to `inbound_url`; returns the callback's HTTP status."""
        if self.inbound_url is None:
            raise RuntimeError("set inbound_url before pushing inbound messages")
        fields = {
            "from": frm,
            "to": to,
            "requestid": requestid or self._request_id(),
            "message": message,
        }
        return await self._deliver(self.inbound_url, self.inbound_format, fields)

    # -- endpoints -----------------------------------------------------------------

    async def _send(self, request: Request) -> JSONResponse:
        self.requests_seen += 1
        if self.fail_next:
            return _failure(self.fail_next.pop(0), self.retry_after)
        try:
            fields = await _read_fields(request)
        except ValueError as exc:
            return _error(400, "Bad Request", str(exc))
        if fields.get("authorization") != self.token:
            return _error(401, "Unauthorized", "invalid or missing authorization token")
        problem = _problem(fields)
        if problem:
            return _error(400, "Bad Request", problem)
        self.sent.append(fields)
        base = str(request.base_url).rstrip("/")
        if isinstance(fields["recipient"], list):
            answer, pushes = self._accept_bulk(fields, base)
        else:
            answer, pushes = self._accept_single(fields, base)
        early = self.early_dlrs > 0 and self.random.random() < self.early_dlrs
        await self._answer_after(self._push_all(pushes), race=early)
        return JSONResponse(answer)

    async def _delivery(self, request: Request) -> JSONResponse:
        params = request.query_params
        if params.get("authorization") != self.token:
            return _error(401, "Unauthorized", "invalid or missing authorization token")
        wanted = params.get("requestid", "").strip()
        if not wanted:
            return _error(400, "Bad Request", "missing parameter: requestid")
        if wanted in self.bulks:
            first = self.messages[self.bulks[wanted][0]]
            entries = [
                {
                    "date": self.messages[rid]["date"],
                    "recipient": self.messages[rid]["recipient"],
                    "requestid": rid,
                    "statusDesc": "",
                    "statusInt": self.messages[rid]["statusInt"],
                    "statusStr": self.messages[rid]["statusStr"],
                    "url": "",
                }
                for rid in self.bulks[wanted]
            ]
            return JSONResponse(
                {
                    "action": "send",
                    "bulkid": wanted,
                    "message": "",
                    "recipient": entries,
                    "sender": first["sender"],
                }
            )
        known = self.messages.get(wanted)
        if known is None:
            return _error(404, "Not Found", "unknown requestid")
        base = str(request.base_url).rstrip("/")
        return JSONResponse(
            {
                "action": "send",
                "date": known["date"],
                "message": "",
                "recipient": known["recipient"],
                "requestid": wanted,
                "sender": known["sender"],
                "statusDesc": "",
                "statusInt": known["statusInt"],
                "statusStr": known["statusStr"],
                "url": f"{base}/status/{wanted}",
            }
        )

    # -- accepting -----------------------------------------------------------------

    def _accept_single(
        self, fields: dict[str, Any], base: str
    ) -> tuple[dict[str, Any], list[tuple[str, str, int, str]]]:
        number = fields["recipient"]
        rid = self._record(fields, number, key="", bulkid="", status_str="ENROUTE")
        answer = {
            "href": f"{base}/api/status/?authorization={self.token}&message={rid}",
            "method": "GET",
            "recipient": number,
            "requestid": rid,
            "sender": fields["sender"],
            "setusInt": 0,
            "statusInt": 0,
            "statusStr": "ENROUTE",
        }
        return answer, self._plan_pushes([(rid, number)])

    def _accept_bulk(
        self, fields: dict[str, Any], base: str
    ) -> tuple[dict[str, Any], list[tuple[str, str, int, str]]]:
        bulkid = "B" + self._alnum(8) + "." + _stamp()
        entries = []
        for item in fields["recipient"]:
            ((key, number),) = item.items()
            rid = self._record(fields, number, key=key, bulkid=bulkid, status_str="QUEUE")
            entries.append({"key": key, "recipient": number, "requestid": rid})
        self.bulks[bulkid] = [e["requestid"] for e in entries]
        answer = {
            "bulkid": bulkid,
            "href": f"{base}/api/status/?authorization={self.token}&bulkid={bulkid}",
            "method": "GET",
            "recipient": entries,
            "sender": fields["sender"],
            "statusInt": 0,
            "statusStr": "QUEUED",
        }
        return answer, self._plan_pushes([(e["requestid"], e["recipient"]) for e in entries])

    def _record(
        self, fields: dict[str, Any], number: str, *, key: str, bulkid: str, status_str: str
    ) -> str:
        rid = self._request_id()
        self.messages[rid] = {
            "recipient": number,
            "sender": fields["sender"],
            "message": fields["message"],
            "key": key,
            "bulkid": bulkid,
            "statusInt": 0,
            "statusStr": status_str,
            "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        return rid

    def _request_id(self) -> str:
        return "R" + self._alnum(15) + "." + _stamp()

    def _alnum(self, n: int) -> str:
        return "".join(self._ids.choice(_ID_CHARS) for _ in range(n))

    # -- pushing -------------------------------------------------------------------

    def _plan_pushes(self, targets: list[tuple[str, str]]) -> list[tuple[str, str, int, str]]:
        pushes = []
        for rid, number in targets:
            plan = self.dlr_plan_for(number) if self.dlr_plan_for else self.dlr_plan
            for status_int, status_str in plan:
                pushes.extend([(rid, number, status_int, status_str)] * (1 + self.duplicates))
        if self.shuffle:
            self.random.shuffle(pushes)
        return pushes

    async def _push_all(self, pushes: list[tuple[str, str, int, str]]) -> None:
        for push in pushes:
            await self.push_dlr(*push)


def _advance(known: dict[str, Any], status_int: int, status_str: str) -> None:
    """Like Connectel, the look-up shows the latest status, but a final one sticks."""
    if known["statusInt"] in _FINAL_CODES:
        return
    known["statusInt"], known["statusStr"] = status_int, status_str


async def _read_fields(request: Request) -> dict[str, Any]:
    body = await request.body()
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        try:
            parsed = json.loads(body)
        except ValueError as exc:
            raise ValueError("body is not valid JSON") from exc
        if not isinstance(parsed, dict):
            raise ValueError("body must be a JSON object")
        return parsed
    if content_type == "application/x-www-form-urlencoded":
        fields: dict[str, Any] = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        if fields.get("bulk", "").lower() in ("true", "1"):
            fields["bulk"] = True
            try:
                fields["recipient"] = json.loads(fields.get("recipient", ""))
            except ValueError as exc:
                raise ValueError("bulk recipient must be JSON text in form mode") from exc
        return fields
    raise ValueError(f"unsupported content type {content_type!r}")


def _problem(fields: dict[str, Any]) -> str:
    """Why a send request is malformed, or "" when it is fine."""
    for name in ("sender", "message", "recipient"):
        if not fields.get(name):
            return f"missing parameter: {name}"
    if not isinstance(fields["sender"], str) or not isinstance(fields["message"], str):
        return "sender and message must be strings"
    if len(fields["message"]) > _MAX_MESSAGE_CHARS:
        return f"message longer than {_MAX_MESSAGE_CHARS} characters"
    recipient = fields["recipient"]
    if fields.get("bulk") is True:
        if not isinstance(recipient, list):
            return "bulk recipient must be a list of {identifier: number} objects"
        keys = set()
        for item in recipient:
            if not isinstance(item, dict) or len(item) != 1:
                return "each bulk recipient must be one {identifier: number} object"
            ((key, number),) = item.items()
            if not _international(number):
                return f"recipient {number!r} is not an internationally formatted number"
            keys.add(key)
        if len(keys) != len(recipient):
            return "bulk recipient identifiers must be unique"
        return ""
    if not isinstance(recipient, str):
        return "recipient must be one number (set bulk to true for a list)"
    if not _international(recipient):
        return f"recipient {recipient!r} is not an internationally formatted number"
    return ""


def _international(number: Any) -> bool:
    return isinstance(number, str) and number.isdigit() and 8 <= len(number) <= 15


def _stamp() -> str:
    return str(time.time_ns() // 100)


def _error(status: int, error: str, message: str) -> JSONResponse:
    return JSONResponse({"error": error, "message": message}, status_code=status)


def _failure(status: int, retry_after: str) -> JSONResponse:
    headers = {"Retry-After": retry_after} if status == 429 else None
    reasons = {429: "Too Many Requests", 500: "Internal Server Error", 503: "Unavailable"}
    return JSONResponse(
        {"error": reasons.get(status, "Error"), "message": f"simulated HTTP {status}"},
        status_code=status,
        headers=headers,
    )
