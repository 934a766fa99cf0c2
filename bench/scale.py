"""Ingest cost per DLR with few and with many messages stored.

    .venv/bin/python -m bench.scale [--small 10000] [--large 1000000] [--reports 5000]

Two SQLite stores are preloaded with submitted messages. In each, `--reports` DLRs
for distinct known request IDs are applied through the Store API, all in flight at
once as concurrent callbacks would be (so group commit works as in production). The
figure is the cost per DLR in each store and their ratio: what a large table adds.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from bench.common import ACCOUNT, preload, settings_env, write_result
from service.model import Report, Status
from service.reconcile import match_key
from service.settings import load_settings
from service.store import open_store
from tests.seeding import REQUEST_ID


async def cost_per_report(data: Path, stored: int, reports: int) -> float:
    store = open_store(load_settings(settings_env(data)))
    await store.open()
    try:
        # Spread over the whole table, as reports for old and new messages arrive.
        ids = [REQUEST_ID.format(n * (stored // reports)) for n in range(reports)]
        started = time.perf_counter()
        await asyncio.gather(
            *(
                store.apply_report(
                    ACCOUNT, Report(rid, Status.DELIVERED), match_key(rid, "", False)
                )
                for rid in ids
            )
        )
        took = time.perf_counter() - started
        counters = (await store.stats("")).total
        assert counters.delivered == reports, counters
        return took / reports
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--reports", type=int, default=5000)
    args = parser.parse_args()
    costs = {}
    for stored in (args.small, args.large):
        data = Path(tempfile.mkdtemp(prefix=f"smsgw-bench-scale-{stored}-"))
        started = time.perf_counter()
        asyncio.run(preload(data, stored))
        print(f"preloaded {stored} messages in {time.perf_counter() - started:.0f} s")
        costs[stored] = asyncio.run(cost_per_report(data, stored, args.reports))
        print(f"{stored:>9} stored  {costs[stored] * 1e6:8.1f} µs per DLR")
    ratio = costs[args.large] / costs[args.small]
    print(f"ratio     {ratio:.2f}x the cost at {args.small} (target <= 1.2)")
    path = write_result(
        "scale",
        {
            "reports": args.reports,
            "us_per_dlr": {str(k): round(v * 1e6, 1) for k, v in costs.items()},
            "ratio": round(ratio, 3),
        },
    )
    print(f"results   {path}")


if __name__ == "__main__":
    main()
