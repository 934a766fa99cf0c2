"""Shared fixtures: a real smsgw served on loopback, with its own data folder.

Every test that takes `tmp_path` (all that start smsgw or open a store do) runs once
per store: `[sqlite]` and `[postgres]`. `make_settings` points smsgw at the store of
the running test, so helpers and tests need not know which one it is.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from service.app import create_app
from service.clock import Clock
from service.settings import Settings, load_settings
from tests.databases import TestDatabase
from tests.servers import free_socket, serve, url_of

TOKEN = "test-token"
T = TypeVar("T")
STORE_KINDS = ("sqlite", "postgres")


@dataclass(frozen=True)
class StoreChoice:
    kind: str = "sqlite"
    database_url: str = ""


_store = StoreChoice()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # Tests without a data folder never open a store: they run once.
    if "tmp_path" in metafunc.fixturenames:
        metafunc.parametrize("store_kind", STORE_KINDS, indirect=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[TestDatabase]:
    database = TestDatabase()
    yield database
    database.close()


@pytest.fixture(autouse=True)
def store_kind(request: pytest.FixtureRequest) -> Iterator[str]:
    """The store this test runs on; PostgreSQL tests get a schema of their own."""
    global _store
    kind: str = getattr(request, "param", "sqlite")
    if kind == "sqlite":
        yield kind
        return
    database: TestDatabase = request.getfixturevalue("postgres")
    if database.skip_reason:
        pytest.skip(database.skip_reason)
    schema, url = database.new_schema()
    _store = StoreChoice(kind, url)
    try:
        yield kind
    finally:
        _store = StoreChoice()
        database.drop_schema(schema)


def store_env() -> dict[str, str]:
    """The environment that points an `smsgw` process at this test's store."""
    return {"DATABASE_URL": _store.database_url}


def make_settings(data: Path, public_url: str = "http://127.0.0.1:9", **changes: Any) -> Settings:
    settings = load_settings(
        {
            "SMSGW_DATA": str(data),
            "SMSGW_API_TOKENS": TOKEN,
            "SMSGW_PUBLIC_URL": public_url,
            **store_env(),
        }
    )
    quick = {
        "poll_interval": 0.02,
        "sandbox_dlr_delay": 0.02,
        "backoff_base": 0.05,
        "request_timeout": 2.0,
    }
    return replace(settings, **{**quick, **changes})


def error_of(response: httpx.Response) -> dict[str, str]:
    body: dict[str, dict[str, str]] = response.json()
    assert set(body["error"]) == {"code", "message", "field"}
    return body["error"]


@dataclass
class Gateway:
    url: str
    api: httpx.AsyncClient
    """Carries the bearer token."""
    raw: httpx.AsyncClient
    """Carries nothing: a provider's or a stranger's view."""
    settings: Settings

    async def send(self, **body: Any) -> list[dict[str, Any]]:
        response = await self.api.post("/v1/messages", json=body)
        assert response.status_code == 202, response.text
        messages: list[dict[str, Any]] = response.json()["messages"]
        return messages

    async def message(self, message_id: str) -> dict[str, Any]:
        response = await self.api.get(f"/v1/messages/{message_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def stats(self) -> dict[str, Any]:
        body: dict[str, Any] = (await self.api.get("/v1/stats")).json()
        return body

    async def applied(self) -> None:
        """Wait until every stored delivery-report callback has been applied."""

        async def none_pending() -> bool:
            response = await self.api.get("/v1/reports", params={"state": "pending"})
            assert response.status_code == 200, response.text
            pending: list[object] = response.json()["reports"]
            return pending == []

        await eventually(none_pending)

    async def add_account(self, **body: Any) -> dict[str, Any]:
        response = await self.api.post("/v1/accounts", json=body)
        assert response.status_code == 201, response.text
        account: dict[str, Any] = response.json()
        return account


async def eventually(check: Callable[[], Awaitable[T]], within: float = 10.0) -> T:
    """The first truthy result of `check`, polled for `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        value = await check()
        if value or time.monotonic() > deadline:
            assert value, "condition not met in time"
            return value
        await asyncio.sleep(0.02)


@asynccontextmanager
async def running_gateway(data: Path, **changes: Any) -> AsyncIterator[Gateway]:
    async with clocked_gateway(data, time.time, **changes) as gateway:
        yield gateway


@asynccontextmanager
async def clocked_gateway(data: Path, clock: Clock, **changes: Any) -> AsyncIterator[Gateway]:
    """smsgw on `data` with settings `changes`, whose clients' quotas and rate limits
    run on `clock`."""
    sock = free_socket()
    settings = make_settings(data, url_of(sock), **changes)
    async with (
        serve(create_app(settings, clock), sock) as url,
        httpx.AsyncClient(
            base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
        ) as api,
        httpx.AsyncClient(base_url=url, timeout=10) as raw,
    ):
        yield Gateway(url, api, raw, settings)


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    async with running_gateway(tmp_path) as gw:
        yield gw


@pytest.fixture
async def receiver() -> AsyncIterator[Any]:
    """A `tests.receiver.Receiver` served on loopback at `receiver.url/<name>`."""
    from starlette.applications import Starlette
    from starlette.routing import Route

    from tests.receiver import Receiver  # it waits with `eventually`, from here

    found = Receiver()
    app = Starlette(routes=[Route("/{name}", found.endpoint, methods=["POST"])])
    async with serve(app) as url:
        found.url = url
        yield found
