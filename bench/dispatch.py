"""Outbound throughput of smsgw sending to a fake provider on loopback.

    .venv/bin/python -m bench.dispatch [--messages 20000] [--rounds 3]
    .venv/bin/python -m bench.dispatch --end-to-end [--serves 2 --workers 1]

Either runs on SQLite, or with `--database postgresql://127.0.0.1:5432` in a fresh
database on that server for each run (bench.common.fresh_postgres), dropped after.

The fake Connectel (tests/fake_connectel.py, its documented wire format) runs in its
own process and pushes no reports.

Preloaded (the default): `smsgw serve` starts with the messages already queued, in the
batch pattern (bulk requests) and then in the loop pattern (one request per message);
the figure is messages accepted by the provider per second, from the moment serve
answers /healthz until the last one is submitted. For reference, the same Connectel
requests also go out through nothing but smsgw's pooled httpx client, as many in
flight as `dispatch.concurrency` allows: the loop pattern cannot be faster than that,
as it makes one such request per message. Each round runs all three one after the
other, so that the ratio of loop to the bare client is taken within a round, and the
median of the rounds' ratios is reported (the machine's other load comes and goes).

End to end: clients POST /v1/messages (`--per-post` recipients each, `--clients` at a
time, spread over the serve processes) while smsgw dispatches them in the batch
pattern; the figure is messages submitted per second from the first POST until the
provider has the last one. `--serves` and `--workers` run several processes on one
PostgreSQL database.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from bench.common import (
    ROOT,
    TOKEN,
    enqueue_only,
    free_port,
    fresh_postgres,
    serving,
    settings_env,
    write_result,
)
from handlers import handler_for
from service.accounts import redactor_for
from service.model import Account, OutgoingSms, SendBatch
from service.settings import load_settings
from service.transport import execute, provider_client

FAKE_TOKEN = "bench-fake-token"
DEADLINE = 600.0
"""Seconds any one run may take."""


def fake_serve(port: int) -> list[str]:
    python = str(ROOT / ".venv" / "bin" / "python")
    return [python, "-m", "bench.fake_provider", str(port), FAKE_TOKEN]


def smsgw(command: str, *args: str) -> list[str]:
    exe = shutil.which("smsgw", path=str(ROOT / ".venv" / "bin")) or "smsgw"
    return [exe, command, *args]


@contextlib.contextmanager
def store(database: str, name: str) -> Iterator[str]:
    """The DATABASE_URL of a fresh store for one run: '' (SQLite in the run's data
    folder) unless `database` names a PostgreSQL server."""
    if not database:
        yield ""
        return
    with fresh_postgres(name, database.rstrip("/")) as url:
        yield url


def fake_account(pattern: str, fake_url: str) -> Account:
    return Account(
        f"fake-{pattern}",
        "connectel",
        credentials={"token": FAKE_TOKEN},
        sender="bench",
        pattern=pattern,
        base_url=fake_url,
        callback_secret="k",
        options={"rate_per_second": 1_000_000},
    )


def submitted(url: str) -> int:
    stats = httpx.get(url + "/v1/stats", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    count: int = stats["total"]["requests"]
    return count


def wait_submitted(url: str, messages: int, since: float, what: str) -> float:
    """Poll until the provider has `messages`; the moment it did."""
    while (done := submitted(url)) < messages:
        if time.monotonic() - since > DEADLINE:
            raise SystemExit(f"{what}: only {done} of {messages} sent in {DEADLINE:.0f} s")
        time.sleep(0.05)
    return time.monotonic()


def figure(messages: int, seconds: float) -> dict[str, float]:
    return {
        "messages": messages,
        "seconds": round(seconds, 2),
        "per_second": round(messages / seconds, 1),
    }


def preloaded(pattern: str, messages: int, fake_url: str, database: str) -> dict[str, float]:
    data = Path(tempfile.mkdtemp(prefix=f"smsgw-bench-dispatch-{pattern}-"))
    with store(database, f"dispatch_{pattern}") as url:
        asyncio.run(enqueue_only(data, messages, fake_account(pattern, fake_url), database_url=url))
        port = free_port()
        with serving(smsgw("serve", "--port", str(port)), settings_env(data, url), port) as serve:
            # From readiness: the process's start (imports, migrations) is not dispatch,
            # and the bare client is timed without its own start either.
            ready, before = time.monotonic(), submitted(serve.url)
            done = wait_submitted(serve.url, messages, ready, pattern)
    return figure(messages - before, done - ready)


async def post_all(urls: list[str], messages: int, clients: int, per_post: int) -> None:
    """`messages` recipients in POSTs of `per_post`, `clients` at a time."""
    posts = iter(range(0, messages, per_post))
    targets = itertools.cycle(urls)

    async def client(http: httpx.AsyncClient) -> None:
        for start in posts:
            body = {
                "to": [f"+4670{n:07d}" for n in range(start, min(start + per_post, messages))],
                "text": "bench",
                "account": "fake-batch",
            }
            response = await http.post(f"{next(targets)}/v1/messages", json=body)
            if response.status_code != 202:
                raise SystemExit(f"POST /v1/messages: HTTP {response.status_code} {response.text}")

    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(headers=headers, timeout=60) as http:
        await asyncio.gather(*(client(http) for _ in range(clients)))


def end_to_end(args: argparse.Namespace, fake_url: str) -> dict[str, float]:
    data = Path(tempfile.mkdtemp(prefix="smsgw-bench-dispatch-e2e-"))
    with store(args.database, "dispatch_e2e") as url, contextlib.ExitStack() as stack:
        asyncio.run(enqueue_only(data, 0, fake_account("batch", fake_url), database_url=url))
        env = settings_env(data, url)
        for _ in range(args.workers):
            log = stack.enter_context(tempfile.TemporaryFile())
            worker = subprocess.Popen(smsgw("worker"), env=env, stdout=log, stderr=log, cwd=ROOT)
            stack.callback(worker.wait, 15)
            stack.callback(worker.send_signal, signal.SIGINT)
        serves = []
        for _ in range(args.serves):
            port = free_port()
            serves.append(
                stack.enter_context(serving(smsgw("serve", "--port", str(port)), env, port))
            )
        started = time.monotonic()
        asyncio.run(post_all([s.url for s in serves], args.messages, args.clients, args.per_post))
        posted = time.monotonic()
        done = wait_submitted(serves[0].url, args.messages, started, "end to end")
    return {
        **figure(args.messages, done - started),
        "posting_seconds": round(posted - started, 2),
    }


async def bare_client(messages: int, fake_url: str) -> dict[str, float]:
    """Connectel send requests through the provider client alone, messages/s."""
    settings = load_settings(settings_env(Path(tempfile.gettempdir())))
    account = Account("bare", "connectel", credentials={"token": FAKE_TOKEN}, sender="bench")
    handler = handler_for("connectel")
    in_flight = asyncio.Semaphore(settings.concurrency)
    # Answers are scrubbed of the account's secrets, as the dispatcher's are.
    redactor = redactor_for(account)

    async def send(client: httpx.AsyncClient, n: int) -> None:
        sms = OutgoingSms(f"bare-{n}", f"+4670{n:07d}", "bench", "bench", "GSM-7", 1)
        batch = SendBatch((sms,), fake_url, "http://127.0.0.1/dlr")
        async with in_flight:
            response = await execute(client, handler.send_request(account, batch), redactor)
        if response.status_code != 200:
            raise SystemExit(f"bare client: HTTP {response.status_code}")

    async with provider_client(settings) as client:
        started = time.monotonic()
        await asyncio.gather(*(send(client, n) for n in range(messages)))
        return figure(messages, time.monotonic() - started)


def rounds(
    count: int, one: Callable[[], dict[str, Any]], line: Callable[[dict[str, Any]], str]
) -> list[dict[str, Any]]:
    """`count` results of `one`, each printed as `line` says as it comes."""
    found = []
    for number in range(1, count + 1):
        found.append(one())
        print(f"round {number}: {line(found[-1])}")
    return found


def preloaded_round(args: argparse.Namespace, fake_url: str) -> dict[str, Any]:
    found: dict[str, Any] = {
        pattern: preloaded(pattern, args.messages, fake_url, args.database)
        for pattern in ("batch", "loop")
    }
    found["bare_client"] = asyncio.run(bare_client(args.messages // 4, fake_url))
    found["loop_vs_bare_client"] = round(
        found["loop"]["per_second"] / found["bare_client"]["per_second"], 3
    )
    return found


def preloaded_rounds(args: argparse.Namespace, fake_url: str) -> dict[str, Any]:
    found = rounds(
        args.rounds,
        lambda: preloaded_round(args, fake_url),
        lambda r: (
            f"batch {r['batch']['per_second']:7.0f} msg/s, loop {r['loop']['per_second']:6.0f} "
            f"msg/s, client alone {r['bare_client']['per_second']:6.0f} req/s: "
            f"loop {r['loop_vs_bare_client']:.2f}x the client"
        ),
    )
    median = statistics.median(r["loop_vs_bare_client"] for r in found)
    print(f"loop is {median:.2f}x the provider client alone (median of {args.rounds} rounds)")
    return {"rounds": found, "loop_vs_bare_client": median}


def end_to_end_rounds(args: argparse.Namespace, fake_url: str) -> dict[str, Any]:
    found = rounds(
        args.rounds,
        lambda: end_to_end(args, fake_url),
        lambda r: (
            f"{r['per_second']:7.0f} msg/s end to end ({args.messages} in {r['seconds']} s; "
            f"all posted in {r['posting_seconds']} s)"
        ),
    )
    median = statistics.median(r["per_second"] for r in found)
    print(f"end to end {median:.0f} msg/s (median of {args.rounds} rounds)")
    return {"rounds": found, "per_second": median}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--database", default="", help="a PostgreSQL server URL; each run gets a fresh database"
    )
    parser.add_argument("--end-to-end", action="store_true")
    parser.add_argument("--serves", type=int, default=1)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--per-post", type=int, default=100)
    args = parser.parse_args()
    if (args.serves > 1 or args.workers) and not args.database:
        raise SystemExit("several processes share a store only on PostgreSQL: give --database")
    port = free_port()
    with serving(
        fake_serve(port), settings_env(Path(tempfile.gettempdir())), port, ready="/"
    ) as fake:
        if args.end_to_end:
            name = f"dispatch_e2e_{args.serves}s{args.workers}w"
            results = end_to_end_rounds(args, fake.url)
        else:
            name = "dispatch"
            results = preloaded_rounds(args, fake.url)
    store_name = "postgresql" if args.database else "sqlite"
    path = write_result(f"{name}_{store_name}", {"store": store_name, **results})
    print(f"results {path}")


if __name__ == "__main__":
    main()
