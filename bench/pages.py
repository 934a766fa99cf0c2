"""How fast the web console's pages answer with many messages stored.

    .venv/bin/python -m bench.pages [--messages 10000] [--requests 50]

A fresh SQLite store gets `--messages` submitted messages (through the Store API, as
the dispatcher leaves them), final reports for half of them and a few inbound
messages; then `smsgw serve` runs on it, the bench signs in like a browser, and each
page is fetched `--requests` times one after another. The figures are p50 and p99
per page in milliseconds, from request to the last byte over loopback; the issue's
target is under 100 ms each. Results go to bench/results/pages.json.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from bench.common import ACCOUNT, TOKEN, preload, serving_smsgw, settings_env, write_result
from service.model import InboundDecision, InboundSms, Report, Status
from service.reconcile import match_key
from service.settings import load_settings
from service.store import open_store
from tests.seeding import REQUEST_ID, number_of

OUTCOMES = (Status.DELIVERED, Status.DELIVERED, Status.DELIVERED, Status.UNDELIVERED)


async def fill(data: Path, messages: int) -> None:
    await preload(data, messages)
    store = open_store(load_settings(settings_env(data)))
    await store.open()
    try:
        # Every other message gets a final report, so History, the counters and the
        # hourly chart all have rows of every kind to read.
        await asyncio.gather(
            *(
                store.apply_report(
                    ACCOUNT,
                    Report(REQUEST_ID.format(n), OUTCOMES[n // 2 % len(OUTCOMES)]),
                    match_key(REQUEST_ID.format(n), "", False),
                )
                for n in range(0, messages, 2)
            )
        )
        for n in range(20):
            await store.receive_inbound(
                ACCOUNT,
                InboundSms(number_of(n), "+46700000000", f"inbound {n}", f"in-{n}"),
                "",
                lambda facts: InboundDecision(note="no_rule"),
            )
    finally:
        await store.close()


def percentile(samples: list[float], share: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def measure(url: str, requests: int) -> dict[str, dict[str, float]]:
    with httpx.Client(base_url=url, timeout=10) as client:
        signed_in = client.post("/console/login", data={"token": TOKEN})
        assert signed_in.status_code == 303, signed_in.text
        history = client.get("/console/history").text
        found = re.search(r"/console/messages/(\w+)", history)
        assert found, "History shows no message"
        pages = {
            "general": "/console/",
            "general fragment": "/console/?fragment=1",
            "history (50)": "/console/history",
            "history (1000)": "/console/history?rows=1000",
            "history status=undelivered": "/console/history?status=undelivered",
            "history to=": f"/console/history?to={number_of(4)}",
            "history account=": f"/console/history?account={ACCOUNT}",
            "message": f"/console/messages/{found[1]}",
            "send": "/console/send",
            "inbound": "/console/inbound",
            "gateways": "/console/gateways",
            "login": "/console/login",
        }
        figures = {}
        for name, path in pages.items():
            samples = []
            for _ in range(requests):
                started = time.perf_counter()
                response = client.get(path)
                samples.append((time.perf_counter() - started) * 1000)
                # The login page sends a signed-in browser on to General.
                assert response.status_code in (200, 303), (path, response.status_code)
            figures[name] = {
                "p50_ms": round(statistics.median(samples), 2),
                "p99_ms": round(percentile(samples, 0.99), 2),
                "bytes": len(response.content),
            }
            print(
                f"{name:28} p50 {figures[name]['p50_ms']:7.2f} ms"
                f"   p99 {figures[name]['p99_ms']:7.2f} ms   {figures[name]['bytes']:7d} B"
            )
        return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="smsgw-bench-pages-") as tmp:
        data = Path(tmp)
        asyncio.run(fill(data, args.messages))
        with serving_smsgw(data) as server:
            figures = measure(server.url, args.requests)
    path = write_result(
        "pages", {"messages": args.messages, "requests": args.requests, "pages": figures}
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
