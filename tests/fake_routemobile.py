"""A fake Route Mobile SMSPLUS Bulk HTTP API to test against over real HTTP.

It serves the specification's endpoints on their documented paths, checks requests
the way Route Mobile does (answer codes in a plain-text body, always HTTP 200), and
pushes delivery reports to the URL configured for the account, as a GET query (or a
POST form) with Route Mobile's field names.
"""

from __future__ import annotations

import random
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from tests.fake_server import FakeServer, query_and_form

Plan = list[tuple[str, str]]
"""(sStatus, iErrCode) steps pushed for one destination."""

_REQUIRED = ("username", "password", "type", "dlr", "destination", "source", "message")
_TYPES = frozenset({"0", "1", "2", "5", "6", "7"})
_HEX_TYPES = frozenset({"2", "6"})
_FINAL = frozenset({"DELIVRD", "UNDELIV", "EXPIRED", "REJECTD", "DELETED", "UNKNOWN", "FAILED"})
_NUMBER = re.compile(r"\+?\d{7,15}")
_ALPHA_SENDER = re.compile(r"[A-Za-z0-9 .\-]{1,11}")
_NUMERIC_SENDER = re.compile(r"\+?\d{1,18}")
_HEX = re.compile(r"(?:[0-9A-Fa-f]{4})+")


class FakeRouteMobile(FakeServer):
    """Route Mobile on loopback: `async with serve(fake.app) as base_url: ...`.

    Endpoints: GET or POST (form) /bulksms/bulksms, and GET /CreditCheck/checkcredits.
    Send checks, in Route Mobile's order: a missing or blank parameter answers `1702`,
    wrong credentials `1703`, a type other than 0-2 or 5-7 `1704`, a dlr other than 0/1
    `1708`, a sender longer than 11 characters (18 digits) or in `blocked_senders`
    `1707`, Unicode text that is not hex of whole UTF-16 units `1705`, all bare. Then
    one item per destination, comma separated: `1706|number` for a malformed number,
    `codes_for[number]|number` when set, `1025|number` when the credit runs out (the
    rest of the batch is dropped, as Route Mobile does), else `1701|number|id`.

    Knobs and records (plain attributes):
    - `username`, `password`: the credentials accepted.
    - `sent`: every send request that passed the whole-request checks, as its fields
      (query and form merged) plus `method`. `requests_seen`: every send request.
    - `messages`: message ID -> `number`, `sender`, `text` (decoded from hex for the
      Unicode types), `type`, `dlr`, `status`, `err`, `submitted`.
    - `fail_next`: HTTP statuses to answer the next send requests with instead, first
      first (e.g. `[503, 429]`); a 429 carries `Retry-After: 1`.
    - `answer_next`: bodies to answer the next send requests with instead (after the
      credential check), e.g. `["1710"]` or `["1025"]`; nothing is recorded.
    - `codes_for`: destination digits -> an answer code for that destination
      (e.g. `{"919800000001": "1032"}`).
    - `credit`: None (unlimited) or how many more messages the account may send;
      each accepted destination costs one.
    - `blocked_senders`: sender IDs refused with `1707`.
    - `id_style`: "pipe" (`1701|number|id`, default) or "colon" (`1701|number:id`).
    - `echo_number`: callable(digits) -> the number written back in the answer and in
      reports (default: as sent), to imitate servers that reformat numbers.
    - `hang_next` / `hang_seconds` (default 5.0): accept the next sends but answer only
      after that long; `release_hung()` answers them at once.
    - `dlr_url`: where reports are pushed (None: nowhere, statuses still advance);
      reports go only for sends with `dlr=1`, as Route Mobile's do.
      `dlr_method`: "GET" (query, default) or "POST" (form).
    - `dlr_plan`: (sStatus, iErrCode) steps per destination, default
      `[("DELIVRD", "000")]`; `dlr_plan_for`: callable(number) -> plan, overriding it.
    - `dlr_before_response`: push (and await) a send's reports before answering it.
    - `duplicates`: extra copies of each report (0: each once); `shuffle`: push a send's
      reports in an order drawn from `random` (a `random.Random(seed)`).
    - `dlr_acks`: the HTTP status our callback answered to each push (0: unreachable).
    - `balance`: what the credit check reports.

    Pushes made after a send's answer run as background tasks; `drain()` waits for them.
    """

    def __init__(self, username: str, password: str, *, seed: int = 0) -> None:
        self.username = username
        self.password = password
        self.messages: dict[str, dict[str, Any]] = {}
        self.fail_next: list[int] = []
        self.answer_next: list[str] = []
        self.codes_for: dict[str, str] = {}
        self.credit: int | None = None
        self.blocked_senders: set[str] = set()
        self.id_style = "pipe"
        self.echo_number: Callable[[str], str] = lambda number: number
        self.dlr_method = "GET"
        self.dlr_plan: Plan = [("DELIVRD", "000")]
        self.dlr_plan_for: Callable[[str], Plan] | None = None
        self.shuffle = False
        self.random = random.Random(seed)
        self.balance = 1250.75
        self._ids = random.Random(f"ids-{seed}")
        super().__init__(
            [
                Route("/bulksms/bulksms", self._send, methods=["GET", "POST"]),
                Route("/CreditCheck/checkcredits", self._credits, methods=["GET", "POST"]),
            ]
        )

    # -- test controls -------------------------------------------------------------

    async def push_dlr(self, message_id: str, status: str, err: str = "000") -> int:
        """Push one report to `dlr_url`; returns the callback's HTTP status (0: none)."""
        known = self.messages.get(message_id)
        if known is not None and known["status"] not in _FINAL:
            known["status"], known["err"] = status, err
        now = time.strftime("%Y-%m-%d %H:%M:%S")
        fields = {
            "sSender": known["sender"] if known else "",
            "sMobileNo": self.echo_number(known["number"]) if known else "",
            "sStatus": status,
            "sMessageId": message_id,
            "dtSubmit": known["submitted"] if known else now,
            "dtDone": now,
            "iCostPerSms": "0.0200",
            "iCharge": "0.0200",
            "iMCCMNC": "40486",
            "iErrCode": err,
            "sTagName": "",
            "sUdf1": "",
            "sUdf2": "",
        }
        if self.dlr_url is None:
            return 0
        fmt = "form" if self.dlr_method.upper() == "POST" else "get"
        status_code = await self._deliver(self.dlr_url, fmt, fields)
        self.dlr_acks.append(status_code)
        return status_code

    # -- endpoints -----------------------------------------------------------------

    async def _send(self, request: Request) -> PlainTextResponse:
        self.requests_seen += 1
        if self.fail_next:
            status = self.fail_next.pop(0)
            headers = {"Retry-After": "1"} if status == 429 else None
            return PlainTextResponse(f"HTTP {status}", status_code=status, headers=headers)
        fields = await query_and_form(request)
        problem = self._whole_request_problem(fields)
        if problem:
            return PlainTextResponse(problem)
        if self.answer_next:
            return PlainTextResponse(self.answer_next.pop(0))
        self.sent.append({**fields, "method": request.method})
        items, pushes = self._accept(fields)
        await self._answer_after(self._push_all(pushes))
        return PlainTextResponse(",".join(items))

    async def _credits(self, request: Request) -> PlainTextResponse:
        fields = await query_and_form(request)
        if (fields.get("username"), fields.get("password")) != (self.username, self.password):
            return PlainTextResponse("PERMISSION DENIED")
        return PlainTextResponse(f"BALANCE:{self.balance}")

    # -- accepting -----------------------------------------------------------------

    def _whole_request_problem(self, fields: dict[str, str]) -> str:
        """The bare code answering a request refused as a whole, or ""."""
        if any(not fields.get(name, "").strip() for name in _REQUIRED):
            return "1702"
        if (fields["username"], fields["password"]) != (self.username, self.password):
            return "1703"
        if fields["type"] not in _TYPES:
            return "1704"
        if fields["dlr"] not in ("0", "1"):
            return "1708"
        source = fields["source"]
        valid_sender = _NUMERIC_SENDER.fullmatch(source) or _ALPHA_SENDER.fullmatch(source)
        if not valid_sender or source in self.blocked_senders:
            return "1707"
        if fields["type"] in _HEX_TYPES and not _HEX.fullmatch(fields["message"]):
            return "1705"
        return ""

    def _accept(self, fields: dict[str, str]) -> tuple[list[str], list[tuple[str, str, Plan]]]:
        items: list[str] = []
        pushes: list[tuple[str, str, Plan]] = []
        for raw in fields["destination"].split(","):
            destination = raw.strip()
            number = destination.lstrip("+")
            written = self.echo_number(number)
            if not _NUMBER.fullmatch(destination):
                items.append(f"1706|{destination}")
                continue
            if number in self.codes_for:
                items.append(f"{self.codes_for[number]}|{written}")
                continue
            if self.credit is not None:
                if self.credit <= 0:
                    items.append(f"1025|{written}")
                    break  # Route Mobile stops working through the batch here
                self.credit -= 1
            message_id = str(uuid.UUID(int=self._ids.getrandbits(128), version=4))
            self.messages[message_id] = {
                "number": number,
                "sender": fields["source"],
                "text": _decoded(fields["type"], fields["message"]),
                "type": fields["type"],
                "dlr": fields["dlr"],
                "status": "ACKED",
                "err": "",
                "submitted": time.strftime("%Y-%m-%d %H:%M:%S"),
            }
            separator = ":" if self.id_style == "colon" else "|"
            items.append(f"1701|{written}{separator}{message_id}")
            if fields["dlr"] == "1":
                plan = self.dlr_plan_for(number) if self.dlr_plan_for else self.dlr_plan
                pushes.append((message_id, number, plan))
        return items, pushes

    # -- pushing -------------------------------------------------------------------

    async def _push_all(self, pushes: list[tuple[str, str, Plan]]) -> None:
        steps = [
            (message_id, status, err)
            for message_id, _number, plan in pushes
            for status, err in plan
            for _ in range(1 + self.duplicates)
        ]
        if self.shuffle:
            self.random.shuffle(steps)
        for message_id, status, err in steps:
            await self.push_dlr(message_id, status, err)


def _decoded(kind: str, message: str) -> str:
    if kind not in _HEX_TYPES:
        return message
    return bytes.fromhex(message).decode("utf-16-be", errors="replace")
