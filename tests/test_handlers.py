"""Every provider's callback routes, fuzzed over real HTTP against a running smsgw.

Each example sends one callback to `/callbacks/{account}/dlr` or `/inbound` of an
account of the provider under test: a well-formed one built from a small model of the
reports (or inbound message) it holds, the same with one numeric field made hostile
(digits that are not ASCII, 5,000-digit integers, NaN and Infinity), a body that is
hostile as a whole (30,000 `[`, NaN beside valid fields, oversized fields), or any
bytes under any content type and charset.

The answer must be 2xx or a 4xx with a clear error (never a 5xx, never a dropped
connection), and the stored state must be what the answer implies, read back over
the API:
- a 4xx changed nothing: no event, the same counters, messages and inbound list;
- a 2xx to a well-formed DLR stored exactly its reports: one `dlr.*` event per report,
  `dlr.unmatched` the first time an (ID, status) arrives and `dlr.duplicate` after,
  as the model in this file keeps them; counters and messages unchanged (no message
  is sent here, so no report can match one);
- a 2xx to a well-formed inbound message stored it once: `inbound.received` the first
  time its provider ID arrives (listed first in /v1/inbound), `inbound.duplicate` after;
- a hostile variant is refused with a 4xx;
- any other 2xx produced only events of its own route's kind.

The send-answer, poll, balance and signature readers, which no callback route
reaches, are fuzzed per handler in tests/test_handler_answers.py.
"""

from __future__ import annotations

import asyncio
import json
import string
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from handlers import HANDLERS
from handlers.twilio import signature
from tests.callback_wires import (
    CREDENTIALS,
    DEEP,
    FOREIGN_NUMBERS,
    HUGE_INTEGER,
    NON_ASCII_DIGITS,
    NON_FINITE,
    PROVIDERS,
    SENTINEL,
    TWILIO_TOKEN,
    Provider,
    Raw,
    Wire,
    json_text,
    with_value,
)
from tests.conftest import Gateway, eventually, running_gateway
from tests.rig import account_fields


def test_every_registered_provider_is_fuzzed() -> None:
    assert set(PROVIDERS) == set(HANDLERS)


# -- one request ----------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """A callback as it goes on the wire; `expect`: "2xx", "4xx" or "any"."""

    method: str
    query: list[tuple[str, str]]
    body: bytes
    content_type: str | None
    expect: str
    reports: list[tuple[str, str]] = field(default_factory=list)
    """Well-formed DLR: (request ID, our status) of each report it holds."""
    inbound: tuple[str, str, str] | None = None
    """Well-formed inbound: (from, text, provider ID)."""


def call_of(wire: Wire, expect: str, **model: Any) -> Call:
    if wire.encoding == "query":
        flat = [(k, str(v)) for k, v in wire.fields.items()]
        return Call("GET", flat, b"", None, expect, **model)
    if wire.encoding == "form":
        body = urlencode({k: str(v) for k, v in wire.fields.items()}).encode()
        return Call("POST", [], body, "application/x-www-form-urlencoded", expect, **model)
    body = json_text(wire.fields[""] if set(wire.fields) == {""} else wire.fields).encode()
    return Call("POST", [], body, "application/json", expect, **model)


REQUEST_IDS = st.sampled_from([f"FZ{n:04d}" for n in range(12)]) | st.text(
    string.ascii_letters + string.digits, min_size=6, max_size=24
).map(lambda s: "FZ" + s)
# NUL aside: what a NUL may do is the question of a test of its own, below.
TEXTS = st.text(st.characters(exclude_characters="\x00"), max_size=40).map(lambda s: "fz " + s)
NUMBERS = st.integers(0, 9_999_999).map(lambda n: f"+4670{n:07d}")
CONTENT_TYPES = st.sampled_from(
    [
        None,
        "application/json",
        "application/json; charset=utf-8",
        "application/json; charset=latin-1",
        "application/x-www-form-urlencoded",
        "application/x-www-form-urlencoded; charset=utf-16",
        "text/plain",
        "text/xml",
        "multipart/form-data; boundary=x",
        "application/octet-stream",
    ]
)
ASCII = st.text(string.printable, max_size=20)
FIELD_NAMES = st.sampled_from(
    [
        "requestid", "statusInt", "statusStr", "recipient", "sMessageId", "sStatus",
        "iErrCode", "sMobileNo", "results", "messageId", "status", "statusCode", "to",
        "from", "text", "message", "MessageSid", "MessageStatus", "ErrorCode", "Body",
        "From", "To", "id", "msgid", "toaddr", "messages", "fromNumber", "SmsStatus",
    ]
)  # fmt: skip
ANY_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | ASCII,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)


@st.composite
def well_formed_dlr(draw: st.DrawFn, provider: Provider) -> Call:
    assert provider.dlr is not None
    count = draw(st.integers(1, 3)) if provider.batch else 1
    ours = draw(
        st.lists(st.sampled_from(sorted(provider.statuses)), min_size=count, max_size=count)
    )
    rids = draw(st.lists(REQUEST_IDS, min_size=count, max_size=count))
    wire = provider.dlr([(r, provider.statuses[s][0]) for r, s in zip(rids, ours, strict=True)])
    encoding = draw(st.sampled_from(provider.encodings))
    reports = [(r, provider.statuses[s][1]) for r, s in zip(rids, ours, strict=True)]
    return call_of(Wire(wire.fields, encoding), "2xx", reports=reports)


@st.composite
def well_formed_inbound(draw: st.DrawFn, provider: Provider) -> Call:
    assert provider.inbound is not None
    sender, text, provider_id = draw(NUMBERS), draw(TEXTS), draw(REQUEST_IDS)
    wire = provider.inbound(sender, text, provider_id)
    encoding = draw(st.sampled_from(provider.encodings))
    return call_of(Wire(wire.fields, encoding), "2xx", inbound=(sender, text, provider_id))


HOSTILITIES = ("nesting", "non-ascii digits", "huge integer", "non-finite", "oversized")


def hostile_number(hostility: str, encoding: str) -> st.SearchStrategy[Any]:
    """A value for a numeric field: a JSON literal in a JSON body, text elsewhere."""
    if hostility == "non-ascii digits":
        return st.sampled_from(NON_ASCII_DIGITS)
    literals = [HUGE_INTEGER, "-" + HUGE_INTEGER] if hostility == "huge integer" else NON_FINITE
    return st.sampled_from(literals).map(Raw if encoding == "json" else str)


@st.composite
def hostile_callback(draw: st.DrawFn, provider: Provider, kind: str, hostility: str) -> Call:
    """A callback made hostile in one way; None in the provider's table: refused anyway."""
    build = provider.dlr if kind == "dlr" else provider.inbound
    if hostility == "nesting" or build is None:
        return draw(st.sampled_from(HOSTILE_BODIES[hostility]))
    json_only = kind == "inbound" and hostility == "non-finite"
    encoding = "json" if json_only else draw(st.sampled_from(provider.encodings))
    rid = draw(REQUEST_IDS)
    if kind == "dlr":
        assert provider.dlr is not None
        ours = draw(st.sampled_from(sorted(provider.statuses)))
        fields = provider.dlr([(rid, provider.statuses[ours][0])]).fields
        if hostility == "oversized":
            # Longer than any provider's message ID, within the 64 KiB body limit.
            fields = json.loads(json.dumps(fields).replace(rid, rid * 2000))
        else:
            path = draw(st.sampled_from(provider.numeric))
            fields = with_value(fields, path, draw(hostile_number(hostility, encoding)))
        return call_of(Wire(fields, encoding), "4xx")
    assert provider.inbound is not None
    sender: Any = draw(NUMBERS)
    if hostility == "oversized":
        sender, rid = draw(st.sampled_from([("+46" + "7" * 40_000, rid), (sender, rid * 2000)]))
    elif hostility == "non-ascii digits":
        sender = "+" + draw(st.sampled_from(FOREIGN_NUMBERS))
    else:
        # A number written as a JSON number, out of range or not finite.
        sender = draw(hostile_number(hostility, encoding))
    return call_of(Wire(provider.inbound(sender, "fz hello", rid).fields, encoding), "4xx")


def applies(provider: str, kind: str, hostility: str) -> bool:
    """Whether the provider's callback has a field to make hostile this way."""
    found = PROVIDERS[provider]
    if kind == "dlr" and hostility in ("non-ascii digits", "huge integer", "non-finite"):
        return found.dlr is None or bool(found.numeric)
    if kind == "inbound" and hostility == "non-finite":
        # NaN is a sender ID like any other word in a form; only JSON has the literal.
        return found.inbound is None or "json" in found.encodings
    return True


def _refused(body: bytes | str, content_type: str | None = "application/json") -> Call:
    return Call("POST", [], body.encode() if isinstance(body, str) else body, content_type, "4xx")


# Bodies hostile as a whole, whatever the provider reads.
HOSTILE_BODIES: dict[str, list[Call]] = {
    "nesting": [_refused(DEEP), _refused(DEEP, None), _refused('{"a":' * 20000 + "1")],
    "non-ascii digits": [_refused("\u0663"), _refused('{"id": "\u0661"}')],
    "huge integer": [_refused(HUGE_INTEGER), _refused('{"id": ' + HUGE_INTEGER + "}")],
    "non-finite": [_refused("[NaN]"), _refused('{"x": Infinity}')],
    "oversized": [_refused(b"x" * 70_000, "application/x-www-form-urlencoded")],
}


@st.composite
def any_bytes(draw: st.DrawFn) -> Call:
    body = draw(
        st.binary(max_size=300)
        | ANY_JSON.map(lambda v: json.dumps(v).encode())
        | st.dictionaries(FIELD_NAMES, ANY_JSON, max_size=6).map(lambda v: json.dumps(v).encode())
        | st.lists(st.tuples(FIELD_NAMES | ASCII, ASCII), max_size=6).map(
            lambda pairs: urlencode(pairs).encode()
        )
        | ASCII.map(lambda s: s.encode("utf-16"))
    )
    query = draw(st.lists(st.tuples(FIELD_NAMES | ASCII, ASCII), max_size=4))
    method = draw(st.sampled_from(["GET", "POST"]))
    return Call(method, query, body if method == "POST" else b"", draw(CONTENT_TYPES), "any")


def callbacks(provider: Provider, kind: str) -> st.SearchStrategy[Call]:
    """Ordinary callbacks: well-formed, or any bytes (with ASCII values) under any
    content type; refused as a whole where the provider sends no such callback."""
    build = provider.dlr if kind == "dlr" else provider.inbound
    if build is None:
        return any_bytes().map(lambda c: Call(c.method, c.query, c.body, c.content_type, "4xx"))
    good = well_formed_dlr(provider) if kind == "dlr" else well_formed_inbound(provider)
    return st.one_of(good, any_bytes())


# -- the running smsgw and what it stores ---------------------------------------------


@dataclass
class Fuzzed:
    gateway: Gateway
    callback_urls: dict[str, dict[str, str]]
    cursor: str = "0"
    reports: set[tuple[str, str]] = field(default_factory=set)
    """Model: the (request ID, status) pairs stored so far."""
    inbound_ids: set[str] = field(default_factory=set)
    """Model: the provider IDs of inbound messages stored so far."""
    state: tuple[Any, ...] = ()
    sentinels: int = 0

    async def new_events(self) -> list[dict[str, Any]]:
        answer = await self.gateway.api.get(
            "/v1/events", params={"after": self.cursor, "limit": 1000}
        )
        assert answer.status_code == 200, answer.text
        self.cursor = answer.headers["smsgw-next-cursor"]
        return [json.loads(line) for line in answer.text.splitlines() if line]

    async def snapshot(self) -> tuple[Any, ...]:
        """The counters and the inbound list (no message is ever sent here; a change to
        one would show as a `message.*` event)."""
        api = self.gateway.api
        stats, inbound = await asyncio.gather(
            api.get("/v1/stats"), api.get("/v1/inbound", params={"limit": 1000})
        )
        return stats.json(), inbound.json()

    async def after(self) -> tuple[list[dict[str, Any]], tuple[Any, ...]]:
        """The events since the last call, and the state now.

        A reader sees an event only once no transaction older than it is running (on
        PostgreSQL, anywhere in the cluster), so the events of a callback may show a
        little after its answer. A sentinel report, stored after the callback's
        answer, marks the end: every event of the callback comes before it.
        """
        self.sentinels += 1
        sentinel = f"SENTINEL{self.sentinels}"
        mark = await self.gateway.raw.post(
            self.callback_urls[SENTINEL]["dlr"], json={"id": sentinel, "status": "DELIVERED"}
        )
        assert mark.status_code == 200, mark.text
        events: list[dict[str, Any]] = []

        async def marked() -> bool:
            events.extend(await self.new_events())
            return any(e.get("request_id") == sentinel for e in events)

        await eventually(marked, within=30)
        mine = [e for e in events if e.get("account") != SENTINEL]
        return mine, await self.snapshot()


@pytest.fixture
async def fuzzed(tmp_path: Path) -> AsyncIterator[Fuzzed]:
    async with running_gateway(tmp_path) as gateway:
        urls = {}
        for name, handler in HANDLERS.items():
            credentials = {k: CREDENTIALS[k] for k in handler.credential_fields}
            created = await gateway.add_account(
                **account_fields(f"fz-{name}", name, credentials, "smsgw")
            )
            urls[name] = created["callback_urls"]
        sentinel = await gateway.add_account(**account_fields(SENTINEL, "sandbox", {}, "smsgw"))
        urls[SENTINEL] = sentinel["callback_urls"]
        fuzz = Fuzzed(gateway, urls)
        _, fuzz.state = await fuzz.after()
        yield fuzz


async def perform(fuzz: Fuzzed, provider: str, kind: str, call: Call) -> httpx.Response:
    url = fuzz.callback_urls[provider][kind]
    if call.query:
        url += "&" + urlencode(call.query)
    headers = {"content-type": call.content_type} if call.content_type else {}
    if provider == "twilio":
        params = []
        if call.method == "POST" and call.body.strip():
            try:
                params = parse_qsl(call.body.decode("utf-8"), keep_blank_values=True)
            except UnicodeDecodeError:
                params = []
        headers["x-twilio-signature"] = signature(TWILIO_TOKEN, url, params)
    return await fuzz.gateway.raw.request(call.method, url, content=call.body, headers=headers)


def judge_dlr(fuzz: Fuzzed, call: Call, events: list[dict[str, Any]]) -> None:
    kinds = {e["event"] for e in events}
    assert kinds <= {"dlr.unmatched", "dlr.duplicate"}, kinds
    if call.expect != "2xx":
        return
    expected = []
    for rid, status in call.reports:
        seen = (rid.casefold(), status) in fuzz.reports
        expected.append(("dlr.duplicate" if seen else "dlr.unmatched", rid, status))
        fuzz.reports.add((rid.casefold(), status))
    assert [(e["event"], e["request_id"], e["status"]) for e in events] == expected


async def judge_inbound(
    fuzz: Fuzzed, provider: str, call: Call, events: list[dict[str, Any]]
) -> None:
    kinds = {e["event"] for e in events}
    assert kinds <= {"inbound.received", "inbound.duplicate"}, kinds
    if call.expect != "2xx" or call.inbound is None:
        return
    sender, text, provider_id = call.inbound
    seen = provider_id in fuzz.inbound_ids
    fuzz.inbound_ids.add(provider_id)
    assert [e["event"] for e in events] == ["inbound.duplicate" if seen else "inbound.received"]
    if not seen:
        [newest, *_] = (await fuzz.gateway.api.get("/v1/inbound", params={"limit": 1})).json()[
            "inbound"
        ]
        assert newest["account"] == f"fz-{provider}"
        assert newest["from"].lstrip("+") == sender.lstrip("+") and newest["text"] == text


FUZZ = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
# The hostile cases are few, each drawn from a short list: no shrinking needed.
HOSTILE_FUZZ = settings(FUZZ, max_examples=8, phases=[Phase.explicit, Phase.reuse, Phase.generate])


async def fuzz_one(fuzz: Fuzzed, provider: str, kind: str, call: Call) -> None:
    before = fuzz.state
    answer = await perform(fuzz, provider, kind, call)
    events, fuzz.state = await fuzz.after()
    assert 200 <= answer.status_code < 300 or 400 <= answer.status_code < 500, (
        answer.status_code,
        answer.text[:300],
    )
    if answer.status_code >= 400:
        error = answer.json()["error"]
        assert error["code"] and error["message"], error
        assert events == [] and fuzz.state == before
        assert call.expect != "2xx", (answer.status_code, answer.text[:300], call.body[:120])
        return
    assert call.expect != "4xx", f"{call.body[:120]!r} was taken: {str(events)[:300]}"
    assert fuzz.state[0] == before[0], "a callback for no message changed the counters"
    if kind == "dlr":
        judge_dlr(fuzz, call, events)
        assert fuzz.state[1] == before[1]
    else:
        await judge_inbound(fuzz, provider, call, events)


EVERY_PROVIDER = pytest.mark.parametrize("provider", sorted(PROVIDERS))
KINDS = pytest.mark.parametrize("kind", ["dlr", "inbound"])


@EVERY_PROVIDER
@KINDS
@FUZZ
@given(data=st.data())
async def test_any_callback_is_answered_and_stored_as_its_answer_says(
    fuzzed: Fuzzed, provider: str, kind: str, data: st.DataObject
) -> None:
    call = data.draw(callbacks(PROVIDERS[provider], kind))
    await fuzz_one(fuzzed, provider, kind, call)


@EVERY_PROVIDER
@KINDS
@HOSTILE_FUZZ
@given(data=st.data())
async def test_a_hostile_callback_is_refused_with_a_4xx_and_changes_nothing(
    fuzzed: Fuzzed, provider: str, kind: str, data: st.DataObject
) -> None:
    """Each example tries every way of hostility that applies, one callback each (one
    gateway per provider and kind: starting one costs more than the callbacks)."""
    for hostility in HOSTILITIES:
        if applies(provider, kind, hostility):
            call = data.draw(hostile_callback(PROVIDERS[provider], kind, hostility), hostility)
            await fuzz_one(fuzzed, provider, kind, call)


@pytest.mark.parametrize(
    ("provider", "kind"),
    [(p, k) for p in sorted(PROVIDERS) for k in ("dlr", "inbound") if p != "sms1609"],
)
async def test_a_nul_character_is_stored_or_refused_never_a_5xx(
    fuzzed: Fuzzed, provider: str, kind: str
) -> None:
    """PostgreSQL cannot store U+0000 in text, SQLite can: either store stays up."""
    found = PROVIDERS[provider]
    if kind == "dlr" and found.dlr is not None:
        ours = sorted(found.statuses)[0]
        wire = found.dlr([("FZ\x00NUL", found.statuses[ours][0])])
    elif kind == "inbound" and found.inbound is not None:
        wire = found.inbound("+46700000002", "fz \x00 nul", "FZNUL")
    else:
        pytest.skip(f"{provider} sends no {kind} callback")
    for encoding in found.encodings:
        call = call_of(Wire(wire.fields, encoding), "any")
        await fuzz_one(fuzzed, provider, kind, call)
