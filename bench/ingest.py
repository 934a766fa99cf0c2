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
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import (
    TOKEN,
    dlr_url,
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


async def _counters_exact(data: Path) -> bool:
    store = open_store(load_settings(settings_env(data)))
    await store.open()
    try:
        kept = (await store.stats("")).accounts
        derived = await store.derive_counters()
        return all(kept.get(a) == derived[a] for a in derived) and set(kept) <= set(derived)
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()

    data = Path(tempfile.mkdtemp(prefix="smsgw-bench-ingest-"))
    asyncio.run(preload(data, args.messages))

    with serving_bare(data) as bare:
        wrk(dlr_url(bare.url), seconds=2, connections=args.connections)  # warm-up
        baseline = wrk(dlr_url(bare.url), seconds=args.seconds, connections=args.connections)

    with serving_smsgw(data) as smsgw:
        # Warm-up on the last IDs, so the measured run still finds every ID undelivered.
        wrk(
            dlr_url(smsgw.url),
            seconds=2,
            connections=args.connections,
            start=args.messages - 1,
            stride=-1,
        )
        _drained(smsgw.url)
        before = _stats(smsgw.url)["total"]["delivered"]
        started = time.monotonic()
        durable = wrk(dlr_url(smsgw.url), seconds=args.seconds, connections=args.connections)
        finished = _drained(smsgw.url)
        stats = _stats(smsgw.url)

    delivered = stats["total"]["delivered"]
    applied = delivered - before
    drain_rate = applied / (finished - started)
    exact = asyncio.run(_counters_exact(data))
    if durable.requests > args.messages // 2:
        print(f"warning: {durable.requests} requests for {args.messages} messages; use --messages")
    ratio = durable.throughput / baseline.throughput
    p99_ratio = durable.p99_ms / baseline.p99_ms
    for name, result in (("bare", baseline), ("smsgw", durable)):
        print(
            f"{name:10} {result.throughput:9.0f} req/s  "
            f"p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:6.2f} ms"
        )
    print(f"ratio      throughput {ratio:.2f}x bare (target >= 0.75, goal 0.80)")
    print(f"ratio      p99 {p99_ratio:.2f}x bare (target <= 3)")
    print(
        f"drain      {applied} reports applied in {finished - started:.1f} s from the first "
        f"request: {drain_rate:.0f}/s = {drain_rate / baseline.throughput:.2f}x bare "
        f"(target >= 0.3); every acknowledged one applied: {applied >= durable.requests}; "
        f"counters exact: {exact}"
    )
    print(
        f"delivered  {delivered} messages for {durable.requests} counted responses "
        f"(and the warm-up's); errors {durable.errors}, non-2xx {durable.non_2xx}"
    )
    path = write_result(
        "ingest",
        {
            "messages": args.messages,
            "seconds": args.seconds,
            "connections": args.connections,
            "bare": baseline,
            "smsgw": durable,
            "throughput_ratio": round(ratio, 3),
            "p99_ratio": round(p99_ratio, 3),
            "delivered": delivered,
            "applied": applied,
            "drain_seconds": round(finished - started, 2),
            "drain_rate": round(drain_rate, 1),
            "drain_ratio": round(drain_rate / baseline.throughput, 3),
            "counters_exact": exact,
        },
    )
    print(f"results    {path}")


if __name__ == "__main__":
    main()
