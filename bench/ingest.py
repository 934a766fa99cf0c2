"""Durable DLR ingest against a bare Starlette app, same load generator, same load.

    .venv/bin/python -m bench.ingest [--messages 200000] [--seconds 10] [--connections 32]

smsgw runs on SQLite preloaded with submitted Connectel messages; wrk sends each a
real Connectel JSON DLR (DELIVRD) for a known request ID. smsgw answers 2xx once the
callback is stored (the callback inbox); its applier moves the message to delivered
moments later. The bare app parses the same JSON and answers. Prints throughput,
p50/p99 and their ratios, then the drain: how long until every acknowledged report
was applied (distinct reports / seconds from the first request to the last applied),
and whether the counters equal what the messages table implies.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import httpx

from bench.common import (
    TOKEN,
    dlr_url,
    fresh_postgres,
    preload,
    serving_bare,
    serving_smsgw,
    settings_env,
    write_result,
    wrk,
)
from service.settings import load_settings
from service.store import open_store

_DRAIN_LIMIT = 300.0


def _stats(url: str) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(
        url + "/v1/stats", headers={"Authorization": f"Bearer {TOKEN}"}
    ).json()
    return body


def _inbox_depth(url: str) -> float:
    metrics = httpx.get(url + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text
    line = next(line for line in metrics.splitlines() if line.startswith("smsgw_inbox_depth "))
    return float(line.split()[1])


def _drained(url: str) -> float:
    """Waits until no stored callback waits to be applied; the moment it saw that."""
    deadline = time.monotonic() + _DRAIN_LIMIT
    while _inbox_depth(url) > 0:
        if time.monotonic() > deadline:
            raise SystemExit(f"the inbox did not drain in {_DRAIN_LIMIT:.0f} s")
        time.sleep(0.02)
    return time.monotonic()


async def _counters_exact(data: Path, database_url: str) -> bool:
    store = open_store(load_settings(settings_env(data, database_url)))
    await store.open()
    try:
        kept = (await store.stats("")).accounts
        derived = await store.derive_counters()
        return all(kept.get(a) == derived[a] for a in derived) and set(kept) <= set(derived)
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=300_000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--database",
        default="",
        help="a PostgreSQL server (postgresql://127.0.0.1:5432): smsgw runs on a fresh "
        "database there instead of SQLite",
    )
    args = parser.parse_args()
    with fresh_postgres("ingest", args.database) if args.database else nullcontext("") as url:
        run(args, url)


def run(args: argparse.Namespace, database_url: str) -> None:
    data = Path(tempfile.mkdtemp(prefix="smsgw-bench-ingest-"))
    asyncio.run(preload(data, args.messages, database_url=database_url))

    rounds: list[dict[str, Any]] = []
    with serving_bare(data) as bare, serving_smsgw(data, database_url) as smsgw:
        wrk(dlr_url(bare.url), seconds=2, connections=args.connections)  # warm-up
        # The warm-up takes the last IDs; each round then reports on IDs not seen yet.
        wrk(
            dlr_url(smsgw.url),
            seconds=2,
            connections=args.connections,
            start=args.messages - 1,
            stride=-1,
        )
        next_id = 0
        for _ in range(args.rounds):
            baseline = wrk(dlr_url(bare.url), seconds=args.seconds, connections=args.connections)
            _drained(smsgw.url)
            before = _stats(smsgw.url)["total"]["delivered"]
            started = time.monotonic()
            durable = wrk(
                dlr_url(smsgw.url),
                seconds=args.seconds,
                connections=args.connections,
                start=next_id,
            )
            finished = _drained(smsgw.url)
            applied = _stats(smsgw.url)["total"]["delivered"] - before
            next_id += applied + 1000
            rounds.append(
                {
                    "bare": baseline,
                    "smsgw": durable,
                    "throughput_ratio": round(durable.throughput / baseline.throughput, 3),
                    "p99_ratio": round(durable.p99_ms / baseline.p99_ms, 3),
                    "applied": applied,
                    "all_applied": applied >= durable.requests,
                    "drain_seconds": round(finished - started, 2),
                    "drain_ratio": round(applied / (finished - started) / baseline.throughput, 3),
                }
            )
        delivered = _stats(smsgw.url)["total"]["delivered"]
    if next_id > args.messages - 50_000:
        print(f"warning: {next_id} IDs used of {args.messages}; use --messages")
    exact = asyncio.run(_counters_exact(data, database_url))
    for n, r in enumerate(rounds, 1):
        bare_run, smsgw_run = r["bare"], r["smsgw"]
        print(
            f"round {n}    bare {bare_run.throughput:7.0f} req/s p99 {bare_run.p99_ms:6.2f} ms | "
            f"smsgw {smsgw_run.throughput:7.0f} req/s p99 {smsgw_run.p99_ms:6.2f} ms | "
            f"{r['throughput_ratio']:.2f}x, p99 {r['p99_ratio']:.2f}x, "
            f"drain {r['applied']} in {r['drain_seconds']:.1f} s = {r['drain_ratio']:.2f}x bare"
        )
    median = {
        key: statistics.median(r[key] for r in rounds)
        for key in ("throughput_ratio", "p99_ratio", "drain_ratio")
    }
    print(
        f"median     throughput {median['throughput_ratio']:.2f}x bare (target >= 0.75, goal "
        f"0.80); p99 {median['p99_ratio']:.2f}x (target <= 3); drain "
        f"{median['drain_ratio']:.2f}x bare's req/s (target >= 0.3)"
    )
    errors = sum(r["smsgw"].errors + r["smsgw"].non_2xx for r in rounds)
    print(
        f"checks     every acknowledged report applied: {all(r['all_applied'] for r in rounds)}; "
        f"counters exact: {exact}; errors and non-2xx: {errors}; delivered {delivered}"
    )
    path = write_result(
        "ingest-postgres" if database_url else "ingest",
        {
            "messages": args.messages,
            "seconds": args.seconds,
            "connections": args.connections,
            "store": "postgresql" if database_url else "sqlite",
            "rounds": rounds,
            "median": median,
            "counters_exact": exact,
            "delivered": delivered,
        },
    )
    print(f"results    {path}")


if __name__ == "__main__":
    main()
