"""A fake IntelliSoftware HTTP interface to test against over real HTTP.

It serves the username/password HTTP interface on its documented paths and answers
in its documented plain-text shapes, and it forwards status reports and received
SMS to callback URLs the way IntelliSoftware does: configured on the account (the
Forwarding tab), never per request.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from service.segments import segment
from tests.fake_server import FakeServer, query_and_form

Plan = list[int]
Push = tuple[str, str, int]

MAX_RECIPIENTS = 100
_FINAL = frozenset({4, 5, 6, 7, 8, 11, 12})
_BAD_GATEWAY_PAGE = (
    "<html><head><title>Service Unavailable</title></head>"
    "<body><h1>Service Unavailable</h1><p>HTTP Error {status}.</p></body></html>"
)


class FakeIntelliSoftware(FakeServer):
    """IntelliSoftware on loopback: `async with serve(fake.app) as base_url: ...`.

    Endpoints, GET query or POST form alike (fields are read from both, like
    ASP.NET's `Request(...)`):
    - /smsgateway/sendmsg.aspx: `username`, `password`, `to`, `text`, `from`,
      `maxconcat` (default 1), `type` (1 text, 2 Unicode with `hex`, 6 Voice-SMS).
      Checks, in order: ERR:NO_USERNAME, ERR:NO_PASSWORD, ERR:LOGIN_INVALID, a planned
      `error_next` code, ERR:NO_TO, more than 100 numbers ERR:INVALID_REQUEST, an
      unknown type ERR:INVALID_REQUEST, ERR:NO_TEXT (types 1 and 6), ERR:PARAMETER_MISSING
      / ERR:PARAMETER_INVALID (type 2 `hex`), ERR:INSUFFICIENT_CREDIT. Numbers are
      processed as IntelliSoftware says it does: '+' and the '00' prefix dropped, a
      national number (one leading 0) gets `country_code`, duplicates removed. One
      number left: one line `ID:<id>` or `ERR:<code>`; more: `<number>,ID:<id>` or
      `<number>,ERR:<code>` per number, all sharing one ID. Lines end in CRLF.
    - /smsgateway/getbalance.aspx: `BALANCE:<credits>`, or ERR:NO_USERNAME /
      ERR:NO_PASSWORD / ERR:LOGIN_INVALID.

    Assumption where the documents are silent: a text that needs more parts than
    `maxconcat` is sent cut down to `maxconcat` parts (recorded as `truncated`).

    Knobs and records (plain attributes):
    - `username`, `password`: what the fake accepts. `credits`: the balance; each
      accepted recipient costs the parts sent (Voice-SMS: 1). `country_code`: added
      to national numbers.
    - `sent`: the fields of every send request that got at least one ID (dict).
      `requests_seen`: every send request that arrived. `balance_requests`: likewise.
    - `messages`: (msgid, number) -> `text`, `from`, `type`, `parts`, `truncated`,
      current `status`. `submissions`: msgid -> its numbers in answer order.
    - `fail_next`: HTTP statuses to answer the next send requests with instead, first
      first (e.g. `[503, 429]`); nothing is recorded in `sent`. A 429 has Retry-After 1.
    - `error_next`: ERR codes (without `ERR:`) to answer the next authenticated send
      requests with, whole-submission style, e.g. `["INSUFFICIENT_CREDIT"]`.
    - `number_errors`: number (international digits) -> ERR code answered for that
      recipient, e.g. `{"447700900999": "INVALID_NUMBER"}`. Numbers that are not 10 to
      15 digits get ERR:INVALID_NUMBER anyway.
    - `dlr_url`: where status reports are pushed (None: nowhere; statuses still
      advance). `dlr_format`: "form" (POST fields, as documented; default) or "get".
    - `dlr_plan`: status codes pushed per accepted recipient, default `[3, 4]` (Sent,
      Delivered). `dlr_plan_for`: optional callable(number) -> plan overriding it.
    - `dlr_before_response`: push (and await) a send's reports before answering it.
    - `duplicates`: extra copies of each report pushed.
    - `dlr_acks`: the HTTP status our callback gave each push (0: unreachable).
    - `inbound_url` / `inbound_format` ("form": the classic POST fields; "json": the
      newer `{"messages": [...]}` body): where `push_inbound` posts.

    Pushes after a send's answer run as background tasks; `drain()` waits for them.
    """

    def __init__(self, username: str, password: str, *, credits: float = 1000) -> None:
        self.username = username
        self.password = password
        self.credits = credits
        self.country_code = "44"
        self.balance_requests = 0
        self.messages: dict[tuple[str, str], dict[str, Any]] = {}
        self.submissions: dict[str, list[str]] = {}
        self.fail_next: list[int] = []
        self.error_next: list[str] = []
        self.number_errors: dict[str, str] = {}
        self.dlr_format = "form"
        self.dlr_plan: Plan = [3, 4]
        self.dlr_plan_for: Callable[[str], Plan] | None = None
        self.inbound_format = "form"
        self._next_id = 10011000000000000001
        self._next_inbound = 20022000000000000001
        super().__init__(
            [
                Route("/smsgateway/sendmsg.aspx", self._send, methods=["GET", "POST"]),
                Route("/smsgateway/getbalance.aspx", self._balance, methods=["GET", "POST"]),
            ]
        )

    # -- test controls -------------------------------------------------------------

    async def push_dlr(self, msgid: str, toaddr: str, status: int) -> int:
        """Push one status report to `dlr_url`; returns the callback's HTTP status."""
        known = self.messages.get((msgid, toaddr))
        if known is not None and known["status"] not in _FINAL:
            known["status"] = status
        if self.dlr_url is None:
            return 0
        fields = {"msgid": msgid, "status": str(status), "toaddr": toaddr}
        answer = await self._deliver(self.dlr_url, self.dlr_format, fields)
        self.dlr_acks.append(answer)
        return answer

    async def push_inbound(
        self, frm: str, text: str, *, to: str = "", msgid: str = "", sent: str = ""
    ) -> int:
        """Forward a received SMS to `inbound_url`; returns the callback's HTTP status."""
        if self.inbound_url is None:
            raise RuntimeError("set inbound_url before pushing inbound messages")
        msgid = msgid or self._inbound_id()
        sent = sent or time.strftime("%Y-%m-%dT%H:%M:%S-00:00", time.gmtime())
        if self.inbound_format == "json":
            body = {
                "messages": [
                    {
                        "from": frm,
                        "to": to,
                        "messageid": msgid,
                        "channel": "sms",
                        "sent": sent,
                        "content": {"msgtype": "text", "text": text},
                    }
                ]
            }
            return await self._deliver(self.inbound_url, "json", body)
        fields = {"from": frm, "text": text, "msgid": msgid, "sent": sent}
        return await self._deliver(self.inbound_url, "form", fields)

    # -- endpoints -----------------------------------------------------------------

    async def _send(self, request: Request) -> Response:
        self.requests_seen += 1
        if self.fail_next:
            return _failure(self.fail_next.pop(0))
        fields = await query_and_form(request)
        refusal = self._login(fields)
        if refusal:
            return _text(f"ERR:{refusal}")
        if self.error_next:
            return _text(f"ERR:{self.error_next.pop(0)}")
        submitted = [n.strip() for n in fields.get("to", "").split(",") if n.strip()]
        if not submitted:
            return _text("ERR:NO_TO")
        if len(submitted) > MAX_RECIPIENTS:
            return _text("ERR:INVALID_REQUEST")
        content = _content(fields)
        if isinstance(content, str):
            return _text(f"ERR:{content}")
        message_type, text = content
        maxconcat = fields.get("maxconcat", "1").strip() or "1"
        if not maxconcat.isdigit() or int(maxconcat) < 1:
            return _text("ERR:INVALID_REQUEST")
        needed = 1 if message_type == 6 else segment(text).segments
        parts = min(needed, int(maxconcat))
        numbers = list(dict.fromkeys(self._international(n) for n in submitted))
        verdicts = {n: self._verdict(n) for n in numbers}
        accepted = [n for n, error in verdicts.items() if not error]
        if len(accepted) * parts > self.credits:
            return _text("ERR:INSUFFICIENT_CREDIT")
        msgid = self._message_id() if accepted else ""
        for number in accepted:
            self.messages[(msgid, number)] = {
                "text": text,
                "from": fields.get("from", ""),
                "type": message_type,
                "parts": parts,
                "truncated": needed > parts,
                "status": 2,
            }
        if accepted:
            self.credits -= len(accepted) * parts
            self.submissions[msgid] = accepted
            self.sent.append(fields)
        if len(numbers) == 1:
            (only,) = numbers
            body = f"ERR:{verdicts[only]}" if verdicts[only] else f"ID:{msgid}"
        else:
            body = "\r\n".join(
                f"{n},ERR:{verdicts[n]}" if verdicts[n] else f"{n},ID:{msgid}" for n in numbers
            )
        pushes = self._plan_pushes(msgid, accepted)
        await self._answer_after(self._push_all(pushes))
        return _text(body)

    async def _balance(self, request: Request) -> Response:
        self.balance_requests += 1
        fields = await query_and_form(request)
        refusal = self._login(fields)
        if refusal:
            return _text(f"ERR:{refusal}")
        credits = self.credits
        shown = str(int(credits)) if float(credits).is_integer() else str(credits)
        return _text(f"BALANCE:{shown}")

    # -- helpers -------------------------------------------------------------------

    def _login(self, fields: dict[str, str]) -> str:
        if not fields.get("username"):
            return "NO_USERNAME"
        if not fields.get("password"):
            return "NO_PASSWORD"
        if (fields["username"], fields["password"]) != (self.username, self.password):
            return "LOGIN_INVALID"
        return ""

    def _international(self, number: str) -> str:
        digits = number.replace(" ", "")
        if digits.startswith("+"):
            digits = digits[1:]
        elif digits.startswith("00"):
            digits = digits[2:]
        elif digits.startswith("0"):
            digits = self.country_code + digits[1:]
        return digits

    def _verdict(self, number: str) -> str:
        if number in self.number_errors:
            return self.number_errors[number]
        if not number.isdigit() or not 10 <= len(number) <= 15:
            return "INVALID_NUMBER"
        return ""

    def _message_id(self) -> str:
        msgid = str(self._next_id)
        self._next_id += 1
        return msgid

    def _inbound_id(self) -> str:
        msgid = str(self._next_inbound)
        self._next_inbound += 1
        return msgid

    def _plan_pushes(self, msgid: str, numbers: list[str]) -> list[Push]:
        pushes: list[Push] = []
        for number in numbers:
            plan = self.dlr_plan_for(number) if self.dlr_plan_for else self.dlr_plan
            for status in plan:
                pushes.extend([(msgid, number, status)] * (1 + self.duplicates))
        return pushes

    async def _push_all(self, pushes: list[Push]) -> None:
        for push in pushes:
            await self.push_dlr(*push)


def _content(fields: dict[str, str]) -> tuple[int, str] | str:
    """(type, text) of a send request, or the ERR code that refuses it."""
    raw_type = fields.get("type", "1").strip() or "1"
    if raw_type not in ("1", "2", "6"):
        return "INVALID_REQUEST"
    message_type = int(raw_type)
    if message_type == 2:
        hex_text = fields.get("hex", "").strip()
        if not hex_text:
            return "PARAMETER_MISSING"
        try:
            return message_type, bytes.fromhex(hex_text).decode("utf-16-be")
        except ValueError:
            return "PARAMETER_INVALID"
    text = fields.get("text", "")
    if not text:
        return "NO_TEXT"
    return message_type, text


def _text(body: str) -> Response:
    return PlainTextResponse(body)


def _failure(status: int) -> Response:
    if status == 429:
        return PlainTextResponse("Too Many Requests", 429, headers={"Retry-After": "1"})
    return Response(
        _BAD_GATEWAY_PAGE.format(status=status), status, media_type="text/html; charset=utf-8"
    )
