"""Plumbing the benchmarks share: a preloaded store, servers on loopback, wrk, results.

Every benchmark talks to processes on 127.0.0.1 only, runs for a bounded time, and
prints one summary line per figure. Figures are meant to be read as ratios within
one run: the machines are noisy, the ratios are not.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from service.model import Account, NewMessage, Priority
from service.settings import load_settings
from service.store import open_store
from tests.seeding import submitted

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
LUA = ROOT / "bench" / "connectel_dlr.lua"
TOKEN = "bench-token"
ACCOUNT = "conn"
CALLBACK_KEY = "bench-callback-key"
# As long and random as a real provider token: a short word ("bench") would be found,
# and scrubbed, in every callback that says "sender":"bench".
BENCH_PROVIDER_TOKEN = "cT9vQ2xLmR7wZ4pK8sNf3bHj"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def machine() -> dict[str, Any]:
    model = ""
    with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"cpus": os.cpu_count(), "cpu": model, "python": platform.python_version()}


POSTGRES_SERVER = "postgresql://postgres@127.0.0.1:5432"
"""The local PostgreSQL server (trust authentication) that fresh_postgres creates in."""


def settings_env(data_dir: Path, database_url: str = "") -> dict[str, str]:
    """smsgw's environment over `data_dir`; on PostgreSQL when `database_url` is given."""
    return {
        **os.environ,
        "SMSGW_DATA": str(data_dir),
        "SMSGW_API_TOKENS": TOKEN,
        "SMSGW_LOG_FORMAT": "json",
        **({"DATABASE_URL": database_url} if database_url else {}),
    }


@contextmanager
def fresh_postgres(name: str, server: str = POSTGRES_SERVER) -> Iterator[str]:
    """A new empty database `smsgw_bench_<name>` on `server` for the block, dropped
    after it (even when a process still holds a connection); yields its URL."""
    database = f"smsgw_bench_{re.sub(r'[^a-z0-9_]', '_', name.lower())}_{os.getpid()}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(f"{server}/postgres", timeout=10)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
    asyncio.run(admin(f'CREATE DATABASE "{database}"'))
    try:
        yield f"{server}/{database}"
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))


async def preload(
    data_dir: Path, count: int, *, base_url: str = "", database_url: str = ""
) -> None:
    """`count` messages submitted through account `conn` (see tests.seeding)."""
    account = Account(
        ACCOUNT,
        "connectel",
        credentials={"token": BENCH_PROVIDER_TOKEN},
        sender="bench",
        base_url=base_url,
        callback_secret=CALLBACK_KEY,
        options={"rate_per_second": 1_000_000},
    )
    await submitted(load_settings(settings_env(data_dir, database_url)), account, count)


async def enqueue_only(
    data_dir: Path,
    count: int,
    account: Account,
    *,
    batch: int = 5000,
    database_url: str = "",
    priority: Priority = Priority.NORMAL,
) -> None:
    """`account`, and `count` queued messages of `priority` for the dispatcher to send
    through it."""
    settings = load_settings(settings_env(data_dir, database_url))
    store = open_store(settings)
    await store.open()
    try:
        await store.create_account(account)
        for start in range(0, count, batch):
            await store.enqueue(
                [
                    NewMessage(
                        uuid.uuid4().hex,
                        account.name,
                        f"+4670{n:07d}",
                        "bench",
                        "bench",
                        "GSM-7",
                        1,
                        priority=priority,
                    )
                    for n in range(start, min(start + batch, count))
                ],
                {},
            )
    finally:
        await store.close()


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]

    def rss_mib(self) -> float:
        with open(f"/proc/{self.process.pid}/status", encoding="utf-8") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")


@contextmanager
def serving(
    argv: list[str], env: Mapping[str, str], port: int, *, ready: str = "/healthz"
) -> Iterator[Server]:
    """Run a server process until the block ends; its output goes to a log file."""
    log = tempfile.NamedTemporaryFile(prefix="smsgw-bench-", suffix=".log", delete=False)  # noqa: SIM115
    process = subprocess.Popen(argv, env=dict(env), stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{argv[0]} exited; see {log.name}")
            try:
                if httpx.get(url + ready, timeout=1).status_code < 500:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{argv[0]} did not start; see {log.name}")
            time.sleep(0.1)
        yield Server(url, process)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def _smsgw_serve(port: int) -> list[str]:
    exe = shutil.which("smsgw", path=str(ROOT / ".venv" / "bin")) or "smsgw"
    return [exe, "serve", "--host", "127.0.0.1", "--port", str(port)]


def serving_smsgw(
    data_dir: Path, database_url: str = ""
) -> contextlib.AbstractContextManager[Server]:
    """`smsgw serve` on a free loopback port over `data_dir` (or the PostgreSQL
    database `database_url`), until the block ends."""
    port = free_port()
    return serving(_smsgw_serve(port), settings_env(data_dir, database_url), port)


def serving_bare(data_dir: Path) -> contextlib.AbstractContextManager[Server]:
    """The bare Starlette app on a free loopback port, with smsgw's environment."""
    port = free_port()
    return serving(_bare_serve(port), settings_env(data_dir), port)


def _bare_serve(port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "bench.bare:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
    ]


@dataclass
class WrkResult:
    requests: int
    seconds: float
    throughput: float
    p50_ms: float
    p99_ms: float
    errors: int
    non_2xx: int


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)([a-z]+)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


def _percentile(out: str, label: str) -> float:
    # Anchored: the Stdev column can read "75.50%" too.
    return _ms(re.search(rf"^\s*{label}\s+(\S+)$", out, re.MULTILINE).group(1))  # type: ignore[union-attr]


def wrk(
    url: str,
    *,
    seconds: int,
    connections: int,
    threads: int = 1,
    start: int = 0,
    stride: int = 1,
    limit: int = 0,
    until: Callable[[], bool] | None = None,
) -> WrkResult:
    """Drive `url` with Connectel DLRs for request IDs start, start+stride, ... ; with
    `limit`, each thread stops after that many requests (or when `seconds` run out).
    wrk itself always waits out `seconds`, so a bounded run names `until`: polled, and
    once true wrk is interrupted, which makes it print its figures and exit.

    wrk runs on one thread by default: on a 2-core machine the other core is the
    server's, and both servers under comparison get the same share.
    """
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get install -y wrk")
    argv = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        "-s",
        str(LUA),
        url,
        "--",
        str(start),
        str(stride),
        str(threads),
        str(limit),
    ]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    while until is not None and process.poll() is None and not until():
        time.sleep(0.2)
    if process.poll() is None and until is not None:
        process.send_signal(signal.SIGINT)
    out, _ = process.communicate()
    if process.returncode:
        raise RuntimeError(f"wrk failed ({process.returncode}):\n{out}")
    if " requests in " not in out:
        raise RuntimeError(f"wrk said:\n{out}")
    requests, took, unit = re.search(r"(\d+) requests in ([\d.]+)(\w+),", out).groups()  # type: ignore[union-attr]
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return WrkResult(
        requests=int(requests),
        seconds=_ms(took + unit) / 1000,
        throughput=float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        p50_ms=_percentile(out, "50%"),
        p99_ms=_percentile(out, "99%"),
        errors=errors,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
    )


def write_result(name: str, data: Mapping[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    document = {
        "benchmark": name,
        "machine": machine(),
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **data,
    }
    path.write_text(json.dumps(document, indent=2, default=lambda o: asdict(o)) + "\n")
    return path


def dlr_url(server_url: str) -> str:
    return f"{server_url}/callbacks/{ACCOUNT}/dlr?key={CALLBACK_KEY}"
