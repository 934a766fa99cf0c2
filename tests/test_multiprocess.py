"""Scale-out: two `smsgw serve` and one `smsgw worker` processes on one PostgreSQL database.

The processes are the installed console script, as a Procfile runs it. A fake
Connectel on loopback takes the sends, and a small load balancer in front of both
servers spreads the fake's DLR callbacks across them, as one would in production.
The DLRs come shuffled, duplicated and partly ahead of their send response; at the
end every message must have been submitted exactly once and every counter be exact.
How long that takes is the machine's business: `bench/multiprocess.py` measures it.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.settings import DEFAULT_FILE
from service.store.postgres import PostgresStore
from tests.conftest import eventually
from tests.databases import TestDatabase
from tests.fake_connectel import FakeConnectel, Plan
from tests.servers import free_socket, serve, until_ready, url_of

SMSGW = shutil.which("smsgw", path=os.path.dirname(sys.executable)) or "smsgw"
TOKEN = "mp-token"
CONNECTEL_TOKEN = "mp-connectel"
MESSAGES = 2000
FINAL = {"delivered": (1, "DELIVRD"), "undelivered": (5, "UNDELIV"), "expired": (8, "EXPIRED")}


class Balancer:
    """Forwards every request to one of the backends, picked at random."""

    def __init__(self, seed: int) -> None:
        self.backends: list[str] = []
        self.hits: Counter[str] = Counter()
        self._random = random.Random(seed)
        self._client = httpx.AsyncClient(timeout=30)
        self.app = Starlette(routes=[Route("/{path:path}", self._forward, methods=["GET", "POST"])])

    async def _forward(self, request: Request) -> Response:
        backend = self._random.choice(self.backends)
        self.hits[backend] += 1
        answer = await self._client.request(
            request.method,
            backend + request.url.path,
            params=request.url.query,
            content=await request.body(),
            headers={"content-type": request.headers.get("content-type", "")},
        )
        return Response(answer.content, answer.status_code)

    async def aclose(self) -> None:
        await self._client.aclose()


@contextlib.contextmanager
def smsgw_processes(env: dict[str, str], commands: list[list[str]], logs: Path) -> Iterator[None]:
    """The processes, each logging to a file in `logs` that a failure can be read from."""
    processes = []
    for n, command in enumerate(commands):
        with (logs / f"{n}-{command[0]}.log").open("wb") as log:
            processes.append(
                subprocess.Popen([SMSGW, *command], env=env, stdout=log, stderr=subprocess.STDOUT)
            )
    try:
        yield
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
async def database(postgres: TestDatabase) -> AsyncIterator[str]:
    if postgres.skip_reason:
        pytest.skip(postgres.skip_reason)
    schema, url = postgres.new_schema()
    yield url
    postgres.drop_schema(schema)


def small_batches(folder: Path) -> Path:
    """The default settings with bulks of 25: a bulk whose DLRs the fake pushes before
    answering then answers well within the request timeout, and the processes meet
    over many more claims."""
    text = DEFAULT_FILE.read_text(encoding="utf-8")
    assert "\nbatch_size = 200 " in text
    path = folder / "settings.toml"
    path.write_text(text.replace("\nbatch_size = 200 ", "\nbatch_size = 25 ", 1), encoding="utf-8")
    return path


def plan_for(outcomes: dict[str, str], duplicated: set[str]) -> Any:
    def plan(number: str) -> Plan:
        final = FINAL[outcomes[number]]
        steps: Plan = [(0, "ENROUTE"), final]
        return [*steps, final] if number in duplicated else steps

    return plan


async def test_two_servers_and_a_worker_share_the_work_exactly(
    database: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    logs = tmp_path_factory.mktemp("multiprocess")
    rng = random.Random(6)
    numbers = [f"46701{n:06d}" for n in range(MESSAGES)]
    outcomes = {n: rng.choices(list(FINAL), weights=(70, 20, 10))[0] for n in numbers}
    duplicated = set(rng.sample(numbers, MESSAGES * 3 // 10))
    fake = FakeConnectel(CONNECTEL_TOKEN, seed=6)
    fake.dlr_plan_for = plan_for(outcomes, duplicated)
    fake.shuffle = True
    fake.early_dlrs = 0.3
    balancer = Balancer(seed=6)
    lb_sock = free_socket()
    ports = [free_socket() for _ in range(2)]
    backends = [url_of(sock) for sock in ports]
    for sock in ports:
        sock.close()  # the smsgw processes bind these ports themselves
    balancer.backends = backends
    env = {
        **os.environ,
        "DATABASE_URL": database,
        "SMSGW_API_TOKENS": TOKEN,
        "SMSGW_PUBLIC_URL": url_of(lb_sock),
        "SMSGW_DATA": str(logs),
        "SMSGW_LOG_FORMAT": "json",
        "SMSGW_CONFIG": str(small_batches(logs)),
    }
    commands = [["serve", "--port", url.rsplit(":", 1)[1]] for url in backends] + [["worker"]]
    async with serve(fake.app) as fake_url, serve(balancer.app, lb_sock) as lb_url:
        with smsgw_processes(env, commands, logs):
            for url in backends:
                await until_ready(url)
            async with httpx.AsyncClient(
                timeout=30, headers={"Authorization": f"Bearer {TOKEN}"}
            ) as api:
                created = await api.post(
                    f"{backends[0]}/v1/accounts",
                    json={
                        "name": "conn",
                        "provider": "connectel",
                        "credentials": {"token": CONNECTEL_TOKEN},
                        "sender": "SCALE",
                        "base_url": fake_url,
                        "priority": 1,
                        "options": {"rate_per_second": 5000},
                    },
                )
                assert created.status_code == 201, created.text
                fake.dlr_url = created.json()["callback_urls"]["dlr"]
                assert fake.dlr_url.startswith(lb_url)
                half = MESSAGES // 2
                for url, chunk in zip(backends, (numbers[:half], numbers[half:]), strict=True):
                    sent = await api.post(
                        f"{url}/v1/messages",
                        json={"to": [f"+{n}" for n in chunk], "text": "scale", "account": "conn"},
                    )
                    assert sent.status_code == 202, sent.text

                async def settled() -> dict[str, Any]:
                    await fake.drain()
                    total: dict[str, Any] = (await api.get(f"{backends[1]}/v1/stats")).json()[
                        "total"
                    ]
                    finished = total["delivered"] + total["undelivered"] + total["failed"]
                    return total if finished == MESSAGES and total["pending"] == 0 else {}

                # A guard against a hang, not a speed claim: bench/multiprocess.py times it.
                total = await eventually(settled, within=600)
        await fake.drain()
    await balancer.aclose()

    submitted = Counter(
        number
        for request in fake.sent
        for number in (
            [next(iter(item.values())) for item in request["recipient"]]
            if isinstance(request["recipient"], list)
            else [request["recipient"]]
        )
    )
    assert set(submitted) == set(numbers) and set(submitted.values()) == {1}
    expected = Counter(outcomes.values())
    assert total == {
        "requests": MESSAGES,
        "accepted": MESSAGES,
        "failed": 0,
        "delivered": expected["delivered"],
        "undelivered": expected["undelivered"] + expected["expired"],
        "pending": 0,
        "cancelled": 0,
        "unmatched": 0,
    }
    store = PostgresStore(database)
    await store.open()
    try:
        stats = await store.stats("9999-01-01T00:00:00.000Z")
        assert stats.accounts["conn"] == (await store.derive_counters())["conn"]
        assert stats.unmatched == {}
    finally:
        await store.close()
    # Every DLR was acknowledged after its commit (none refused with 503), both servers
    # took a share, and some raced ahead of their send response and waited for it.
    assert set(fake.dlr_acks) == {200}
    assert len(fake.dlr_acks) == 2 * MESSAGES + len(duplicated)
    assert all(balancer.hits[url] > MESSAGES // 2 for url in backends)
    conn = await asyncpg.connect(database)
    try:
        parked = await conn.fetchval(
            "SELECT COUNT(*) FROM events WHERE event = 'dlr.matched' AND data LIKE $1",
            '%"parked":true%',
        )
    finally:
        await conn.close()
    assert parked > 0
