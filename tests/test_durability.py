"""Crash safety: smsgw killed with SIGKILL mid-stream loses nothing it acknowledged.

smsgw runs as its own process on the test's store. Delivery reports pour in at full
rate from many connections, the process is killed without warning, and a new one
starts on the same store: every report that got a 2xx must be stored and applied,
and the counters must equal what the messages table implies. The outbox is killed
mid-dispatch the same way: no queued message may be lost, and none the provider
had answered may be submitted twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from service.model import Account
from service.settings import DEFAULT_FILE
from service.store import open_store
from tests.conftest import TOKEN, eventually, make_settings, store_env
from tests.fake_connectel import FakeConnectel
from tests.seeding import REQUEST_ID, submitted
from tests.servers import free_socket, serve, until_ready, url_of

SMSGW = shutil.which("smsgw", path=os.path.dirname(sys.executable)) or "smsgw"
KEY = "durability-key"
REPORTS = 1500


@contextlib.contextmanager
def smsgw(data: Path, port: int, config: Path | None = None) -> Iterator[subprocess.Popen[bytes]]:
    env = dict(
        os.environ,
        SMSGW_DATA=str(data),
        SMSGW_API_TOKENS=TOKEN,
        SMSGW_PUBLIC_URL=f"http://127.0.0.1:{port}",
        **store_env(),
    )
    if config is not None:
        env["SMSGW_CONFIG"] = str(config)
    with (data / f"smsgw-{port}.log").open("ab") as log:
        process = subprocess.Popen(
            [SMSGW, "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()


def free_port() -> int:
    sock = free_socket()
    port: int = sock.getsockname()[1]
    sock.close()
    return port


def dlr(n: int) -> dict[str, Any]:
    return {
        "action": "dlr",
        "requestid": REQUEST_ID.format(n),
        "statusInt": 1,
        "statusStr": "DELIVRD",
    }


async def stats_and_table(url: str, data: Path) -> tuple[dict[str, int], dict[str, int]]:
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}) as api:
        kept: dict[str, int] = (await api.get(f"{url}/v1/stats")).json()["accounts"]["conn"]
    store = open_store(make_settings(data))
    await store.open()
    try:
        implied = (await store.derive_counters())["conn"].as_dict()
    finally:
        await store.close()
    kept.pop("unmatched")
    return kept, implied


async def test_every_acknowledged_report_survives_a_sigkill(tmp_path: Path) -> None:
    account = Account("conn", "connectel", credentials={"token": "t"}, callback_secret=KEY)
    await submitted(make_settings(tmp_path), account, REPORTS)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    acked: set[int] = set()
    with smsgw(tmp_path, port) as process:
        await until_ready(url)
        third = asyncio.Event()
        queue: asyncio.Queue[int] = asyncio.Queue()
        for n in range(REPORTS):
            queue.put_nowait(n)

        async def provider(client: httpx.AsyncClient) -> None:
            while not queue.empty():
                n = queue.get_nowait()
                with contextlib.suppress(httpx.HTTPError):
                    answer = await client.post(f"{url}/callbacks/conn/dlr?key={KEY}", json=dlr(n))
                    if answer.status_code == 200:
                        acked.add(n)
                        if len(acked) == REPORTS // 3:
                            third.set()

        async def killer() -> None:
            await third.wait()
            process.send_signal(signal.SIGKILL)

        async with httpx.AsyncClient(timeout=5) as client:
            await asyncio.gather(killer(), *(provider(client) for _ in range(32)))
    assert REPORTS // 3 <= len(acked) < REPORTS, "the kill came too late to prove anything"

    with smsgw(tmp_path, port):
        await until_ready(url)
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}) as api:
            await applied(api, url)
            listed = (await api.get(f"{url}/v1/messages", params={"limit": 1000})).json()
            delivered = (await api.get(f"{url}/v1/stats")).json()["accounts"]["conn"]["delivered"]
        assert delivered >= len(acked)
        kept, implied = await stats_and_table(url, tmp_path)
        assert kept == implied
        assert {m["status"] for m in listed["messages"]} <= {"submitted", "delivered"}
        # The provider retries what was not acknowledged; then everything is delivered once.
        async with httpx.AsyncClient(timeout=5) as client:
            for n in range(REPORTS):
                if n not in acked:
                    answer = await client.post(f"{url}/callbacks/conn/dlr?key={KEY}", json=dlr(n))
                    assert answer.status_code == 200
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}) as api:
            await applied(api, url)
        kept, implied = await stats_and_table(url, tmp_path)
        assert kept == implied and kept["delivered"] == REPORTS and kept["pending"] == 0


async def applied(api: httpx.AsyncClient, url: str) -> None:
    """Wait until the new process has applied every stored callback."""

    async def none_pending() -> bool:
        answer = await api.get(f"{url}/v1/reports", params={"state": "pending", "limit": 1})
        return answer.status_code == 200 and answer.json()["reports"] == []

    await eventually(none_pending, within=60)


def short_leases(folder: Path, concurrency: int | None = None) -> Path:
    """The default settings with a two-second claim lease, so a killed process's claims
    expire within the test (and `concurrency` request slots, when given)."""
    text = DEFAULT_FILE.read_text(encoding="utf-8")
    changes = {"\nlease_seconds = 120.0 ": "\nlease_seconds = 2.0 "}
    if concurrency is not None:
        changes["\nconcurrency = 16 "] = f"\nconcurrency = {concurrency} "
    for old, new in changes.items():
        assert old in text
        text = text.replace(old, new, 1)
    path = folder / "settings.toml"
    path.write_text(text)
    return path


async def add_loop_account(
    api: httpx.AsyncClient, url: str, fake_socket: socket.socket, **fields: Any
) -> None:
    """The Connectel account "conn" (token "t"), one request per message, at the fake."""
    created = await api.post(
        f"{url}/v1/accounts",
        json={
            "name": "conn",
            "provider": "connectel",
            "credentials": {"token": "t"},
            "sender": "IKEA",
            "pattern": "loop",
            "base_url": url_of(fake_socket),
            **fields,
        },
    )
    assert created.status_code == 201, created.text


async def test_a_kill_during_dispatch_loses_nothing_and_never_sends_twice(tmp_path: Path) -> None:
    fake = FakeConnectel("t")
    fake_socket = free_socket()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    config = short_leases(tmp_path)
    messages = 400
    async with serve(fake.app, fake_socket):
        fake.dlr_url = None
        with smsgw(tmp_path, port, config) as process:
            await until_ready(url)
            async with httpx.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}) as api:
                await add_loop_account(api, url, fake_socket, options={"rate_per_second": 200})
                numbers = [f"+46701{n:06d}" for n in range(messages)]
                sent = await api.post(
                    f"{url}/v1/messages", json={"to": numbers, "text": "hi", "account": "conn"}
                )
                assert sent.status_code == 202

                async def under_way() -> bool:
                    return len(fake.sent) >= messages // 4

                await eventually(under_way)
                process.send_signal(signal.SIGKILL)
        submitted_before = len(fake.sent)
        assert submitted_before < messages, "the kill came too late to prove anything"

        with smsgw(tmp_path, port, config):
            await until_ready(url)
            async with httpx.AsyncClient(
                base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}
            ) as api:

                async def settled() -> list[dict[str, Any]]:
                    """Every message, once none waits in the outbox any more."""
                    listed: list[dict[str, Any]] = []
                    cursor = None
                    while True:
                        params = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
                        page = (await api.get("/v1/messages", params=params)).json()
                        listed += page["messages"]
                        if not (cursor := page["next_cursor"]):
                            break
                    for message in listed:
                        if message["status"] == "queued":
                            return []
                        if message["status"] == "sending" and not await unknown(api, message):
                            return []
                    return listed

                listed = await eventually(settled, within=60)
        assert len(listed) == messages
        # Each number at most once: a request that may have reached the provider before
        # the kill is recorded as outcome unknown, never sent again.
        times = Counter(str(s["recipient"]) for s in fake.sent)
        assert max(times.values()) == 1
        assert len(fake.sent) > submitted_before
        left_unknown = [m for m in listed if m["status"] == "sending"]
        assert len(fake.sent) + len(left_unknown) >= messages


async def unknown(api: httpx.AsyncClient, message: dict[str, Any]) -> bool:
    """Whether the message's send was found interrupted: it may have reached the
    provider, so it stays as it was and is never sent again."""
    detail = (await api.get(f"/v1/messages/{message['id']}")).json()
    return "message.outcome_unknown" in [e["event"] for e in detail["events"]]


async def test_a_kill_leaves_only_the_requests_in_flight_unknown(tmp_path: Path) -> None:
    """One request slot, its request hanging at the provider, four messages behind it:
    a SIGKILL then leaves only the hung one to outcome_unknown. The four were never
    claimed, so the next process sends them."""
    fake = FakeConnectel("t")
    fake.dlr_url = None
    fake.hang_next, fake.hang_seconds = 1, 30.0
    fake_socket = free_socket()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    config = short_leases(tmp_path, concurrency=1)
    async with serve(fake.app, fake_socket):
        with smsgw(tmp_path, port, config) as process:
            await until_ready(url)
            async with httpx.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}) as api:
                await add_loop_account(api, url, fake_socket)
                numbers = [f"+4670100000{n}" for n in range(5)]
                sent = await api.post(
                    f"{url}/v1/messages", json={"to": numbers, "text": "hi", "account": "conn"}
                )
                assert sent.status_code == 202

                async def hanging() -> bool:
                    return fake.requests_seen == 1

                await eventually(hanging)
                await asyncio.sleep(0.3)  # long enough for any claim taken ahead to commit
                process.send_signal(signal.SIGKILL)
        fake.release_hung()
        hung = f"+{fake.sent[0]['recipient']}"

        with smsgw(tmp_path, port, config):
            await until_ready(url)
            async with httpx.AsyncClient(
                base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}
            ) as api:

                async def settled() -> dict[str, dict[str, Any]]:
                    listed = (await api.get("/v1/messages", params={"limit": 10})).json()
                    by_number = {str(m["to"]): m for m in listed["messages"]}
                    unsettled = ("queued", "sending")
                    waiting = [m for m in by_number.values() if m["status"] in unsettled]
                    if len(waiting) == 1 and await unknown(api, waiting[0]):
                        return by_number
                    return {}

                by_number = await eventually(settled, within=30)
        assert by_number[hung]["status"] == "sending"
        assert {m["status"] for n, m in by_number.items() if n != hung} == {"enroute"}
        assert sorted(f"+{s['recipient']}" for s in fake.sent) == sorted(numbers)
