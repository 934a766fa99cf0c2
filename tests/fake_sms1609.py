"""A fake 1609SMS gateway to test against over real HTTP.

It serves the two pages of the 1609SMS "SMS Gateway API" on their documented paths and
answers in their plain-text shapes: `OK` / `OK <smsid>` / `ERROR <code>` for sending,
a bare number for credits, a bare delivery code for the status page. 1609SMS pushes
nothing (no delivery reports, no documented inbound format), so neither does the fake.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from tests.fake_server import FakeServer

DELIVERY_CODES = ("DELIVERED", "NOT DELIVERED", "BUFFERED", "SUBMITTED", "REJECTED", "NONE")
ERROR_CODES = (
    *("100", "101", "102", "103", "104", "105", "106", "107", "108", "109", "110"),
    *("111", "112", "113", "114", "115", "116", "117", "118", "119", "120", "150"),
)

_SINGLE_CHARS = 160
_LONG_CHARS = 459
_LONG_PART_CHARS = 153
_SENDER_CHARS = 11
_SENDER_TEXT = re.compile(r"[A-Za-z0-9 ]+")
_NUMBER = re.compile(r"[1-9]\d{7,14}")
_YES = frozenset({"yes", "ja"})


class FakeSms1609(FakeServer):
    """1609SMS on loopback: `async with serve(fake.app) as base_url: ...`.

    Endpoints: GET or POST (form) /module/gateway.php (send, or `action=credits`) and
    GET /module/gatewayrapport.php?smsid=. Like a PHP page reading `$_REQUEST`, the
    gateway page takes its fields from the query and the form body alike. The flags
    (`logging`, `delivery`, `test`) count when set to `yes` or `ja`, as the page
    writes both. `clientpwd` is the password or its SHA-1 digest in lower case; an
    upper-case digest is refused (104).

    Checks, in this order, answered `ERROR <code>` with HTTP 200: 100/101 empty
    username/password, 104 wrong login, `maintenance` 150, `blocked` 115/116, then
    for sends 102 empty message, 103 empty `to`, 105 over 160 characters without
    `type=long`, 118 over 459 with it, 106 a number that is not 8-15 digits starting
    1-9, 107 a number under a prefix of `unreachable_prefixes`, 119 a long message to
    a prefix in `no_long_prefixes`, 109 empty sender, 110 an all-digit sender without
    '+', 111 a sender over 11 characters, 113 a sender with characters other than
    letters, digits and spaces (a leading '+' allowed for numbers), 117 a sender in
    `banned_senders`, 108 too few `credits` (parts x recipients).

    Knobs and records (plain attributes):
    - `username`, `password`: the login accepted; `credits`: what `action=credits`
      answers and sends spend (test sends spend nothing).
    - `maintenance`: answer every gateway request `ERROR 150`.
    - `blocked`: None, or "115" / "116" to answer every login with that error.
    - `unreachable_prefixes`, `no_long_prefixes`, `banned_senders`: see the checks.
    - `error_next`: error codes ("104", "120", ...) to answer the next send requests
      with, one per request, first first; nothing is sent or recorded in `sent`.
    - `fail_next`: HTTP statuses to answer the next gateway requests (send or
      credits) with instead, one per request; a 429 or 503 carries `Retry-After: 1`.
      With `echo_url_on_failure` the error page shows the request's URL, as some
      web servers' error pages do (so a GET password would be in it).
    - `requests_seen`: every gateway request that arrived, failed ones included;
      `sent`: each accepted real send's fields; `tested`: each passing `test=yes` send.
    - `messages`: smsid -> {`to` (list of numbers), `sender`, `message`, `parts`,
      `status`, `plan`}. An smsid is given only with `delivery=yes` (the answer is a
      bare `OK` otherwise); test sends get none.
    - `status_plan`: the delivery codes each new message's status page shows, one per
      poll, the last repeated (default `["SUBMITTED", "DELIVERED"]`);
      `status_plan_for`: optional callable(first number as sent) -> plan.
      `set_status(smsid, code)` fixes a status; `polls`: every smsid asked about.
      An unknown smsid shows `NONE`.
    - `answer_suffix`: text appended to every answer (e.g. "\\n", as PHP pages often
      end with a newline).
    - `drain()`: nothing is ever pushed, so there is never anything to wait for; it
      exists so that tests treat every fake alike.
    """

    def __init__(self, username: str, password: str, *, credits: int = 476) -> None:
        self.username = username
        self.password = password
        self.credits = credits
        self.maintenance = False
        self.blocked: str | None = None
        self.unreachable_prefixes: set[str] = set()
        self.no_long_prefixes: set[str] = set()
        self.banned_senders: set[str] = set()
        self.error_next: list[str] = []
        self.fail_next: list[int] = []
        self.echo_url_on_failure = False
        self.tested: list[dict[str, str]] = []
        self.messages: dict[str, dict[str, Any]] = {}
        self.status_plan: list[str] = ["SUBMITTED", "DELIVERED"]
        self.status_plan_for: Callable[[str], list[str]] | None = None
        self.polls: list[str] = []
        self.answer_suffix = ""
        self._next_id = 1234567
        super().__init__(
            [
                Route("/module/gateway.php", self._gateway, methods=["GET", "POST"]),
                Route("/module/gatewayrapport.php", self._report, methods=["GET"]),
            ]
        )

    # -- test controls -------------------------------------------------------------

    def set_status(self, smsid: str, code: str) -> None:
        if code not in DELIVERY_CODES:
            raise ValueError(f"{code!r} is not a 1609SMS delivery code")
        self.messages[smsid]["plan"] = [code]

    # -- endpoints -----------------------------------------------------------------

    async def _gateway(self, request: Request) -> Response:
        self.requests_seen += 1
        if self.fail_next:
            return self._failure(self.fail_next.pop(0), request)
        fields = dict(request.query_params)
        if request.method == "POST":
            body = (await request.body()).decode("utf-8", errors="replace")
            fields.update(parse_qsl(body, keep_blank_values=True))
        problem = self._login_problem(fields)
        if problem:
            return self._answer(f"ERROR {problem}")
        if fields.get("action") == "credits":
            return self._answer(str(self.credits))
        if self.error_next:
            return self._answer(f"ERROR {self.error_next.pop(0)}")
        problem = self._send_problem(fields)
        if problem:
            return self._answer(f"ERROR {problem}")
        if _yes(fields, "test"):
            self.tested.append(fields)
            return self._answer("OK")
        numbers = fields["to"].split(",")
        self.credits -= _parts(fields["message"]) * len(numbers)
        self.sent.append(fields)
        if not _yes(fields, "delivery"):
            return self._answer("OK")
        smsid = str(self._next_id)
        self._next_id += 1
        plan = self.status_plan_for(numbers[0]) if self.status_plan_for else self.status_plan
        self.messages[smsid] = {
            "to": numbers,
            "sender": fields["sender"],
            "message": fields["message"],
            "parts": _parts(fields["message"]),
            "status": "NONE",
            "plan": list(plan),
        }
        await self._hang_if_asked()
        return self._answer(f"OK {smsid}")

    async def _report(self, request: Request) -> PlainTextResponse:
        smsid = request.query_params.get("smsid", "").strip()
        self.polls.append(smsid)
        known = self.messages.get(smsid)
        if known is None:
            return self._answer("NONE")
        plan: list[str] = known["plan"]
        if plan:
            known["status"] = plan.pop(0) if len(plan) > 1 else plan[0]
        return self._answer(known["status"])

    # -- checks --------------------------------------------------------------------

    def _login_problem(self, fields: dict[str, str]) -> str:
        user, pwd = fields.get("clientuser", ""), fields.get("clientpwd", "")
        if not user:
            return "100"
        if not pwd:
            return "101"
        digest = hashlib.sha1(self.password.encode("utf-8")).hexdigest()  # noqa: S324
        if user != self.username or pwd not in (self.password, digest):
            return "104"
        if self.maintenance:
            return "150"
        return self.blocked or ""

    def _send_problem(self, fields: dict[str, str]) -> str:
        message, to = fields.get("message", ""), fields.get("to", "")
        sender = fields.get("sender", "")
        long = fields.get("type") == "long"
        if not message:
            return "102"
        if not to:
            return "103"
        if len(message) > _SINGLE_CHARS and not long:
            return "105"
        if len(message) > _LONG_CHARS:
            return "118"
        numbers = to.split(",")
        if not all(_NUMBER.fullmatch(n) for n in numbers):
            return "106"
        if any(n.startswith(p) for n in numbers for p in self.unreachable_prefixes):
            return "107"
        if long and any(n.startswith(p) for n in numbers for p in self.no_long_prefixes):
            return "119"
        return self._sender_problem(sender) or self._credit_problem(message, numbers)

    def _sender_problem(self, sender: str) -> str:
        if not sender:
            return "109"
        if sender.isdigit():
            return "110"
        if len(sender) > _SENDER_CHARS:
            return "111"
        bare = sender[1:] if sender.startswith("+") else sender
        if not _SENDER_TEXT.fullmatch(bare) or (sender.startswith("+") and not bare.isdigit()):
            return "113"
        if sender in self.banned_senders:
            return "117"
        return ""

    def _credit_problem(self, message: str, numbers: list[str]) -> str:
        return "108" if self.credits < _parts(message) * len(numbers) else ""

    # -- answers -------------------------------------------------------------------

    def _answer(self, text: str) -> PlainTextResponse:
        return PlainTextResponse(text + self.answer_suffix)

    def _failure(self, status: int, request: Request) -> Response:
        body = f"<html><body><h1>Error {status}</h1>"
        if self.echo_url_on_failure:
            body += f"<p>The requested URL {request.url} could not be served.</p>"
        body += "</body></html>"
        headers = {"Retry-After": "1"} if status in (429, 503) else {}
        return Response(body, status_code=status, headers=headers, media_type="text/html")


def _yes(fields: dict[str, str], key: str) -> bool:
    return fields.get(key, "").strip().lower() in _YES


def _parts(message: str) -> int:
    if len(message) <= _SINGLE_CHARS:
        return 1
    return -(-len(message) // _LONG_PART_CHARS)
