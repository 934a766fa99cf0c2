"""Ingest cost per DLR with few and with many messages stored.

    .venv/bin/python -m bench.scale [--small 10000] [--large 1000000] [--reports 5000]

Two SQLite stores are preloaded with submitted messages. In each, `--reports` DLRs
for distinct known request IDs are applied through the Store API, all in flight at
once as concurrent callbacks would be (so group commit works as in production). The
figure is the cost per DLR in each store and their ratio: what a large table adds.
Two cases: reports for the newest messages, where they land in production, and
reports spread evenly over the whole table, the worst case.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.common import ACCOUNT, preload, settings_env, write_result
from service.model import Report, Status
from service.reconcile import match_key
from service.settings import load_settings
from service.store import Store, open_store
from tests.seeding import REQUEST_ID


async def cost_per_report(store: Store, numbers: Sequence[int]) -> float:
    """Seconds per DLR, one for each message number, all applied at once to an unopened
    `store`."""
    await store.open()
    try:
        ids = [REQUEST_ID.format(n) for n in numbers]
        before = (await store.stats("")).total.delivered
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
        delivered = (await store.stats("")).total.delivered - before
        assert delivered == len(ids), (delivered, len(ids))
        return took / len(ids)
    finally:
        await store.close()


def spread(stored: int, reports: int) -> range:
    """Message numbers over the whole table: the worst case, each report on pages no
    other report touches."""
    return range(0, reports * (stored // reports), stored // reports)


def newest(stored: int, reports: int) -> range:
    """The last messages sent: where reports land in production, seconds to minutes
    after their send."""
    return range(stored - reports, stored)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--reports", type=int, default=5000)
    args = parser.parse_args()
    costs: dict[str, dict[int, float]] = {"spread": {}, "newest": {}}
    for stored in (args.small, args.large):
        data = Path(tempfile.mkdtemp(prefix=f"smsgw-bench-scale-{stored}-"))
        started = time.perf_counter()
        asyncio.run(preload(data, stored))
        print(f"preloaded {stored} messages in {time.perf_counter() - started:.0f} s")
        # Each case on its own copy, so that neither finds the other's reports.
        copy = Path(shutil.copytree(data, data.with_name(data.name + "-copy")))
        os.sync()  # or the copy's writeback would slow the commits measured next
        for case, numbers, where in (("spread", spread, data), ("newest", newest, copy)):
            store = open_store(load_settings(settings_env(where)))
            cost = asyncio.run(cost_per_report(store, numbers(stored, args.reports)))
            costs[case][stored] = cost
            print(f"{stored:>9} stored  {case:6}  {cost * 1e6:8.1f} µs per DLR")
    ratios = {case: by[args.large] / by[args.small] for case, by in costs.items()}
    for case, ratio in ratios.items():
        print(f"ratio     {case:6}  {ratio:.2f}x the cost at {args.small} (target <= 1.2)")
    path = write_result(
        "scale",
        {
            "reports": args.reports,
            "us_per_dlr": {
                case: {str(k): round(v * 1e6, 1) for k, v in by.items()}
                for case, by in costs.items()
            },
            "ratio": {case: round(r, 3) for case, r in ratios.items()},
        },
    )
    print(f"results   {path}")


if __name__ == "__main__":
    main()
