"""Outbound throughput of one smsgw process sending to a fake provider on loopback.

    .venv/bin/python -m bench.dispatch [--messages 20000]

The fake Connectel (tests/fake_connectel.py, its documented wire format) runs in its
own process and pushes no reports. `smsgw worker` starts with the messages already
queued, in the batch pattern (bulk requests) and then in the loop pattern (one
request per message); the figure is messages accepted by the provider per second,
from the worker's start until the last one is submitted.

For reference, the same Connectel requests also go out through nothing but smsgw's
pooled httpx client, as many in flight as `dispatch.concurrency` allows: the loop
pattern cannot be faster than that, as it makes one such request per message.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import (
    ROOT,
    TOKEN,
    enqueue_only,
    free_port,
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


def fake_serve(port: int) -> list[str]:
    python = str(ROOT / ".venv" / "bin" / "python")
    return [python, "-m", "bench.fake_provider", str(port), FAKE_TOKEN]


def run(pattern: str, messages: int, fake_url: str) -> dict[str, float]:
    data = Path(tempfile.mkdtemp(prefix=f"smsgw-bench-dispatch-{pattern}-"))
    account = Account(
        f"fake-{pattern}",
        "connectel",
        credentials={"token": FAKE_TOKEN},
        sender="bench",
        pattern=pattern,
        base_url=fake_url,
        callback_secret="k",
        options={"rate_per_second": 1_000_000},
    )
    asyncio.run(enqueue_only(data, messages, account))
    port = free_port()
    # `serve` runs the same dispatcher as `worker`, and answers /v1/stats besides.
    env = settings_env(data)
    exe = shutil.which("smsgw", path=str(ROOT / ".venv" / "bin")) or "smsgw"
    started = time.monotonic()
    with serving([exe, "serve", "--port", str(port)], env, port) as smsgw:
        while True:
            stats = httpx.get(
                smsgw.url + "/v1/stats", headers={"Authorization": f"Bearer {TOKEN}"}
            ).json()
            if stats["total"]["requests"] >= messages:
                break
            if time.monotonic() - started > 600:
                raise SystemExit(f"{pattern}: only {stats['total']['requests']} sent in 600 s")
            time.sleep(0.05)
    took = time.monotonic() - started
    return {
        "messages": messages,
        "seconds": round(took, 2),
        "per_second": round(messages / took, 1),
        "accepted": stats["total"]["accepted"],
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
        took = time.monotonic() - started
    return {
        "messages": messages,
        "seconds": round(took, 2),
        "per_second": round(messages / took, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    args = parser.parse_args()
    port = free_port()
    results: dict[str, Any] = {}
    with serving(
        fake_serve(port), settings_env(Path(tempfile.gettempdir())), port, ready="/"
    ) as fake:
        for pattern in ("batch", "loop"):
            results[pattern] = run(pattern, args.messages, fake.url)
            print(
                f"{pattern:6} {results[pattern]['per_second']:8.0f} messages/s "
                f"({args.messages} in {results[pattern]['seconds']} s; target >= 2000)"
            )
        results["bare_client"] = asyncio.run(bare_client(args.messages // 4, fake.url))
    ratio = results["loop"]["per_second"] / results["bare_client"]["per_second"]
    results["loop_vs_bare_client"] = round(ratio, 3)
    print(
        f"client {results['bare_client']['per_second']:8.0f} requests/s through the provider "
        f"client alone; loop is {ratio:.2f}x that"
    )
    print(f"results {write_result('dispatch', results)}")


if __name__ == "__main__":
    main()
