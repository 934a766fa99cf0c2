"""Shared fixtures: a real smsgw served on loopback, with its own data folder."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from service.app import create_app
from service.settings import Settings, load_settings
from tests.servers import free_socket, serve, url_of

TOKEN = "test-token"
T = TypeVar("T")


def make_settings(data: Path, public_url: str = "http://127.0.0.1:9", **changes: Any) -> Settings:
    settings = load_settings(
        {"SMSGW_DATA": str(data), "SMSGW_API_TOKENS": TOKEN, "SMSGW_PUBLIC_URL": public_url}
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
    sock = free_socket()
    settings = make_settings(data, url_of(sock), **changes)
    async with (
        serve(create_app(settings), sock) as url,
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
