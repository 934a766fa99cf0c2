"""One rig for every provider's tests, at two levels.

- The handler against its fake: `wired` serves the fake and a `Receiver` that stands in
  for smsgw's callback route, and gives a client to perform the handler's requests with
  (through `service.transport.execute`, as the dispatcher does).
- The whole loop: `provider_gateway` runs smsgw with one account whose base URL is the
  fake, and points the fake's pushes at that account's callback URLs; `settle` waits
  until messages reach a final status.

A plain module rather than conftest fixtures: each provider builds its own fake with
its own credentials and knobs, so the tests call these with what differs and keep
their own small `rig` fixture or `<provider>_setup`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from handlers.base import CallbackRequest, ProviderHandler, WireRequest, WireResponse
from service.model import Account, Balance, Outcome, Report
from service.redact import Redactor
from service.transport import execute
from tests.conftest import Gateway, eventually, running_gateway
from tests.fake_connectel import FakeConnectel
from tests.fake_server import FakeServer
from tests.servers import serve

FINAL = frozenset({"delivered", "undelivered", "expired", "rejected", "failed"})
CALLBACKS = ("dlr", "inbound")
BUSY_THEN_SLOWED_THEN_SENT = [
    (Outcome.TRANSIENT, None),
    (Outcome.TRANSIENT, 1.0),
    (Outcome.ACCEPTED, None),
]
"""Outcome and retry-after of three tries at a fake told `fail_next = [503, 429]`:
its 429 asks for one second."""

F = TypeVar("F", bound=FakeServer)
W = TypeVar("W", bound="Wiring[Any]")


@dataclass
class Receiver:
    """A callback endpoint that keeps what arrived, as smsgw's callback route would.

    `hidden`: query parameters left out of what it keeps, like the secret smsgw's own
    route consumes before a handler sees the request.
    """

    status: int = 200
    hidden: Collection[str] = ()
    calls: list[CallbackRequest] = field(default_factory=list)

    async def receive(self, request: Request) -> Response:
        query = request.query_params.multi_items()
        self.calls.append(
            CallbackRequest(
                request.method,
                str(request.url),
                tuple((k, v) for k, v in query if k not in self.hidden),
                dict(request.headers.items()),
                await request.body(),
            )
        )
        return Response(status_code=self.status)

    @property
    def app(self) -> Starlette:
        return Starlette(routes=[Route("/{kind}", self.receive, methods=["GET", "POST"])])


@dataclass
class Wiring(Generic[F]):
    """A served fake, a served receiver and a client for the handler's requests."""

    fake: F
    receiver: Receiver
    client: httpx.AsyncClient
    base_url: str
    """The fake's."""
    receiver_url: str

    async def execute(self, request: WireRequest) -> WireResponse:
        """As the dispatcher performs it, with no secrets to scrub: the handler's own
        tests read the provider's answer as it came."""
        return await execute(self.client, request, Redactor())

    async def read_balance(self, handler: ProviderHandler, account: Account) -> Balance:
        """The handler's balance call performed against the fake, and its reading."""
        request = handler.balance_request(account, self.base_url)
        assert request is not None
        return handler.parse_balance(account, await self.execute(request))

    async def read_poll(
        self, handler: ProviderHandler, account: Account, ids: list[str]
    ) -> list[Report]:
        """The handler's poll for `ids` performed against the fake, and the reports read."""
        request = handler.poll_request(account, self.base_url, ids)
        assert request is not None
        return handler.parse_poll_response(account, ids, await self.execute(request))


@asynccontextmanager
async def wired(
    rig: type[W],
    fake: F,
    *,
    callbacks: Collection[str] = CALLBACKS,
    query: str = "",
    receiver: Receiver | None = None,
) -> AsyncIterator[W]:
    """Serve `fake`, pushing its `callbacks` to a receiver at /<kind><query>; afterwards
    let the fake's pushes finish."""
    receiver = receiver or Receiver()
    async with (
        serve(fake.app) as base_url,
        serve(receiver.app) as receiver_url,
        httpx.AsyncClient(timeout=5) as client,
    ):
        for kind in callbacks:
            setattr(fake, f"{kind}_url", f"{receiver_url}/{kind}{query}")
        yield rig(fake, receiver, client, base_url, receiver_url)
        fake.release_hung()
        await fake.drain()


@asynccontextmanager
async def provider_gateway(
    tmp_path: Path,
    fake: FakeServer,
    account: dict[str, Any],
    *,
    callbacks: Collection[str] = CALLBACKS,
    **settings: Any,
) -> AsyncIterator[tuple[Gateway, dict[str, Any]]]:
    """smsgw with `account` (priority 1) on `fake`, which pushes to its `callbacks` URLs.

    Yields the gateway and the account as smsgw created it.
    """
    async with serve(fake.app) as fake_url, running_gateway(tmp_path, **settings) as gateway:
        created = await gateway.add_account(**account, base_url=fake_url, priority=1)
        for kind in callbacks:
            setattr(fake, f"{kind}_url", created["callback_urls"][kind])
        try:
            yield gateway, created
        finally:
            fake.release_hung()
            await fake.drain()


@asynccontextmanager
async def provider_loop(
    tmp_path: Path, fake: F, account: dict[str, Any], **settings: Any
) -> AsyncIterator[tuple[Gateway, F]]:
    """`provider_gateway` for tests that need the fake rather than the created account."""
    async with provider_gateway(tmp_path, fake, account, **settings) as (gateway, _):
        yield gateway, fake


@dataclass(frozen=True)
class Ambiguous(Generic[F]):
    """How one provider's fake is made to lose a send's answer and report on it later,
    for the contract test of ambiguous sends (tests/test_ambiguous.py).

    - `fake`: a new fake; `account`: the account's fields; `callbacks`: what it pushes.
    - `quiet`: the fake's knob holding the reports it pushes by itself after a send,
      emptied so that the only report is the late one.
    - `late_report`: push "delivered" for the one message the fake took for number
      `to` (digits), returning our callback's HTTP status; None when the provider can
      push nothing and has no look-up by our reference (the send is only concluded).
    - `by`: how smsgw finds the message for that report ("reference" or "recipient").
    """

    fake: Callable[[], F]
    account: dict[str, Any]
    late_report: Callable[[F, str], Awaitable[int]] | None
    by: str = "recipient"
    quiet: str = "dlr_plan"
    callbacks: Collection[str] = CALLBACKS


async def settled_messages(
    gateway: Gateway, ids: list[str], fake: FakeServer | None = None
) -> dict[str, dict[str, Any]]:
    """The messages `ids` once all are final, letting `fake` finish its pushes each time."""

    async def all_final() -> dict[str, dict[str, Any]]:
        if fake is not None:
            await fake.drain()
        messages = {i: await gateway.message(i) for i in ids}
        return messages if {m["status"] for m in messages.values()} <= FINAL else {}

    return await eventually(all_final)


async def settle(gateway: Gateway, fake: FakeServer, ids: list[str]) -> dict[str, str]:
    """The final status of each message of `ids`."""
    messages = await settled_messages(gateway, ids, fake)
    return {i: m["status"] for i, m in messages.items()}


async def settle_mixed(
    gateway: Gateway, fake: FakeServer, account: str, numbers: list[str], expected: dict[str, str]
) -> list[dict[str, Any]]:
    """Send one text to `numbers`; each must settle as `expected` says for its last digit."""
    sent = await gateway.send(to=numbers, text="mixed", account=account)
    statuses = await settle(gateway, fake, [m["id"] for m in sent])
    assert all(statuses[m["id"]] == expected[m["to"][-1]] for m in sent)
    return sent


async def account_counters(gateway: Gateway, account: str) -> dict[str, int]:
    """An account's exact counters from /v1/stats, less `unmatched` (reports that found
    no message), which these tests leave aside."""
    counters: dict[str, int] = (await gateway.stats())["accounts"][account]
    counters.pop("unmatched")
    return counters


async def one_refused_one_delivered(
    gateway: Gateway, account: str, refused_id: str, code: str
) -> dict[str, Any]:
    """The refused message of a pair whose other one was delivered, checked with its code
    and with the account's counters of one each."""
    refused = await gateway.message(refused_id)
    assert refused["error"]["code"] == code
    counters = await account_counters(gateway, account)
    assert (counters["accepted"], counters["failed"], counters["delivered"]) == (1, 1, 1)
    return refused


def account_fields(
    name: str, provider: str, credentials: dict[str, str], sender: str, **more: Any
) -> dict[str, Any]:
    """An account to create through the accounts API (`more`: its other fields)."""
    fields = {"name": name, "provider": provider, "credentials": credentials, "sender": sender}
    return fields | more


CONNECTEL_TOKEN = "conn-token-7f3a"


def connectel_setup(
    tmp_path: Path,
    *,
    pattern: str = "batch",
    options: dict[str, Any] | None = None,
    **settings: Any,
) -> AbstractAsyncContextManager[tuple[Gateway, FakeConnectel]]:
    """smsgw with account "conn" on a fake Connectel: the provider the tests of the
    dispatcher, metrics and breaker run against, as any would do."""
    account = account_fields(
        "conn",
        "connectel",
        {"token": CONNECTEL_TOKEN},
        "IKEA",
        pattern=pattern,
        options=options or {},
    )
    return provider_loop(tmp_path, FakeConnectel(CONNECTEL_TOKEN), account, **settings)


def loop_connectel(base_url: str) -> Account:
    """Account "conn" on a fake Connectel at `base_url`, one request per message, for
    tests that run a store and a dispatcher without a whole smsgw."""
    return Account(
        "conn",
        "connectel",
        credentials={"token": CONNECTEL_TOKEN},
        pattern="loop",
        base_url=base_url,
        callback_secret="k",
    )


def tally(
    *,
    requests: int = 0,
    accepted: int = 0,
    failed: int = 0,
    delivered: int = 0,
    undelivered: int = 0,
    pending: int = 0,
    cancelled: int = 0,
    **more: int,
) -> dict[str, int]:
    """An account's full set of counters, those not named at zero, to compare exactly."""
    counted = {
        "requests": requests,
        "accepted": accepted,
        "failed": failed,
        "delivered": delivered,
        "undelivered": undelivered,
        "pending": pending,
        "cancelled": cancelled,
    }
    return {**counted, **more}


async def send_one(
    gateway: Gateway, fake: FakeServer, account: str, to: str, text: str
) -> tuple[str, dict[str, Any]]:
    """One message sent through `account` and settled: its final status and its detail."""
    [message] = await gateway.send(to=to, text=text, account=account)
    statuses = await settle(gateway, fake, [message["id"]])
    return statuses[message["id"]], await gateway.message(message["id"])


async def listed_inbound(gateway: Gateway) -> tuple[str, str, str]:
    """The one inbound SMS smsgw lists: who sent it, its text and the account it came in on."""
    [inbound] = (await gateway.api.get("/v1/inbound")).json()["inbound"]
    return inbound["from"], inbound["text"], inbound["account"]
