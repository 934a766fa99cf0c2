"""Durable DLR ingest against a bare Starlette app, same load generator, same load.

    .venv/bin/python -m bench.ingest [--messages 200000] [--seconds 10] [--connections 32]

smsgw runs on SQLite preloaded with submitted Connectel messages; wrk sends each a
real Connectel JSON DLR (DELIVRD) for a known request ID, so every request matches,
moves a message to delivered and updates the counters before its 2xx. The bare app
parses the same JSON and answers. Prints throughput, p50/p99 and the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

import httpx

from bench.common import TOKEN, dlr_url, preload, serving_bare, serving_smsgw, write_result, wrk


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
        durable = wrk(dlr_url(smsgw.url), seconds=args.seconds, connections=args.connections)
        stats = httpx.get(
            smsgw.url + "/v1/stats", headers={"Authorization": f"Bearer {TOKEN}"}
        ).json()

    delivered = stats["total"]["delivered"]
    if durable.requests > args.messages // 2:
        print(f"warning: {durable.requests} requests for {args.messages} messages; use --messages")
    ratio = durable.throughput / baseline.throughput
    p99_ratio = durable.p99_ms / baseline.p99_ms
    for name, result in (("bare", baseline), ("smsgw", durable)):
        print(
            f"{name:10} {result.throughput:9.0f} req/s  "
            f"p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:6.2f} ms"
        )
    print(f"ratio      throughput {ratio:.2f}x bare (target >= 0.80)")
    print(f"ratio      p99 {p99_ratio:.2f}x bare (target <= 2)")
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
        },
    )
    print(f"results    {path}")


if __name__ == "__main__":
    main()
