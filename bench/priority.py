"""How long a high-priority message waits behind a bulk campaign.

    .venv/bin/python -m bench.priority [--bulk 100000] [--tries 100] [--rate 500]

`--bulk` bulk messages are queued on one account limited to `--rate` messages a
second (the fake Connectel of bench.dispatch, on loopback, in the loop pattern unless
`--pattern batch`); `smsgw serve` starts sending them, and then `--tries` high-priority
messages are POSTed one at a time, `--spacing` seconds apart. Each one's wait runs
from the moment its POST was sent until smsgw recorded the provider's acceptance (its
status event after `sending`, millisecond timestamps). The campaign outlasts the tries:
every high message is queued behind bulk still waiting. Prints p50/p99 and the count;
the target is a p99 of at most one second.

On SQLite, or with `--database postgresql://127.0.0.1:5432` in a fresh database.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import httpx

from bench.common import TOKEN, enqueue_only, free_port, serving, settings_env, write_result
from bench.dispatch import fake_account, fake_serve, smsgw, store
from service.model import Priority

TARGET_P99 = 1.0
"""Seconds; issue 19's bound."""
ACCEPTED = {"message.submitted", "message.enroute", "message.delivered"}
"""The event that records the provider's acceptance (Connectel's is `enroute`)."""


async def one_try(http: httpx.AsyncClient, account: str, n: int) -> float:
    """POST one high-priority message; seconds until its submission was recorded."""
    posted = time.time()
    response = await http.post(
        "/v1/messages",
        json={"to": f"+4673{n:07d}", "text": "code", "account": account, "priority": "high"},
    )
    if response.status_code != 202:
        raise SystemExit(f"POST /v1/messages: HTTP {response.status_code} {response.text}")
    message_id = response.json()["messages"][0]["id"]
    deadline = posted + 60
    while time.time() < deadline:
        detail = (await http.get(f"/v1/messages/{message_id}")).json()
        for event in detail["events"]:
            if event["event"] in ACCEPTED:
                return datetime.fromisoformat(event["ts"]).timestamp() - posted
        await asyncio.sleep(0.01)
    events = [e["event"] for e in detail["events"]]
    raise SystemExit(f"high-priority message {message_id} not submitted in 60 s: {events}")


async def tries(url: str, account: str, count: int, spacing: float) -> tuple[list[float], int]:
    """Each try's wait, and how many messages the account had submitted by the end."""
    waits = []
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as http:
        for n in range(count):
            waits.append(await one_try(http, account, n))
            await asyncio.sleep(spacing)
        stats = (await http.get("/v1/stats")).json()
    submitted: int = stats["accounts"][account]["requests"]
    return waits, submitted


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bulk", type=int, default=100_000)
    parser.add_argument("--tries", type=int, default=100)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--spacing", type=float, default=0.25)
    parser.add_argument("--pattern", choices=("loop", "batch"), default="loop")
    parser.add_argument(
        "--database", default="", help="a PostgreSQL server URL; the run gets a fresh database"
    )
    args = parser.parse_args()
    fake_port = free_port()
    data = Path(tempfile.mkdtemp(prefix="smsgw-bench-priority-"))
    with (
        serving(
            fake_serve(fake_port), settings_env(Path(tempfile.gettempdir())), fake_port, ready="/"
        ) as fake,
        store(args.database, "priority") as url,
    ):
        account = fake_account(args.pattern, fake.url)
        account = replace(account, options={"rate_per_second": args.rate})
        asyncio.run(
            enqueue_only(data, args.bulk, account, database_url=url, priority=Priority.BULK)
        )
        port = free_port()
        with serving(smsgw("serve", "--port", str(port)), settings_env(data, url), port) as serve:
            waits, submitted = asyncio.run(tries(serve.url, account.name, args.tries, args.spacing))
    if submitted >= args.bulk + len(waits):
        raise SystemExit("the bulk campaign ran out before the tries ended: queue more")
    p50, p99 = percentile(waits, 0.5), percentile(waits, 0.99)
    verdict = "met" if p99 <= TARGET_P99 else "MISSED"
    print(
        f"high priority behind {args.bulk} bulk at {args.rate:.0f} msg/s ({args.pattern}): "
        f"p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms over {len(waits)} tries "
        f"(target p99 <= {TARGET_P99 * 1000:.0f} ms: {verdict})"
    )
    store_name = "postgresql" if args.database else "sqlite"
    result = {
        "store": store_name,
        "pattern": args.pattern,
        "bulk": args.bulk,
        "rate": args.rate,
        "tries": len(waits),
        "p50_seconds": round(p50, 4),
        "p99_seconds": round(p99, 4),
        "max_seconds": round(max(waits), 4),
        "mean_seconds": round(statistics.mean(waits), 4),
    }
    path = write_result(f"priority_{args.pattern}_{store_name}", result)
    print(f"results {path}")


if __name__ == "__main__":
    main()
