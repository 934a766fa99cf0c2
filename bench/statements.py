"""Where a DLR's store time goes: the cost of each SQL statement the writer runs.

    .venv/bin/python -m bench.statements [--stored 20000] [--reports 5000]

A SQLite store preloaded with submitted messages applies `--reports` DLRs for
distinct known request IDs through the Store API, all in flight at once and spread
over the table as in bench.scale, on a writer connection that times every
statement. Prints the cost per DLR, then each statement's share of it, most
expensive first.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from bench.common import preload, settings_env, write_result
from bench.scale import cost_per_report, spread
from service.sealing import Sealer, load_key
from service.settings import load_settings
from service.store.sqlite import SqliteStore

_spent: defaultdict[str, list[float]] = defaultdict(lambda: [0, 0.0])


def _count(sql: str, started: float) -> None:
    entry = _spent[" ".join(sql.split())[:96]]
    entry[0] += 1
    entry[1] += time.perf_counter() - started


class TimedConnection(sqlite3.Connection):
    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> sqlite3.Cursor:
        started = time.perf_counter()
        try:
            return super().execute(sql, parameters)
        finally:
            _count(sql, started)

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> sqlite3.Cursor:
        started = time.perf_counter()
        try:
            return super().executemany(sql, parameters)
        finally:
            _count(f"(many) {sql}", started)


class TimedStore(SqliteStore):
    CONNECTION = TimedConnection


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stored", type=int, default=20_000)
    parser.add_argument("--reports", type=int, default=5000)
    args = parser.parse_args()
    data = Path(tempfile.mkdtemp(prefix="smsgw-bench-statements-"))
    asyncio.run(preload(data, args.stored))
    settings = load_settings(settings_env(data))
    _spent.clear()
    store = TimedStore(settings.sqlite_path, sealer=Sealer(load_key(settings.data_dir)))
    per_report = asyncio.run(cost_per_report(store, spread(args.stored, args.reports)))
    print(f"{per_report * 1e6:8.1f} µs per DLR in all, {args.stored} messages stored")
    rows = []
    for sql, (calls, seconds) in sorted(_spent.items(), key=lambda kv: -kv[1][1]):
        share = seconds / args.reports * 1e6
        if calls < args.reports // 10 and share < 1:
            continue  # opening the store, migrations, reads of the checks
        rows.append({"sql": sql, "calls": calls, "us_per_dlr": round(share, 1)})
        print(f"{share:8.1f} µs per DLR  {calls:6d} calls  {sql}")
    total = sum(r["us_per_dlr"] for r in rows)
    print(f"{total:8.1f} µs per DLR in SQL statements ({total / (per_report * 1e6):.0%})")
    result = {"stored": args.stored, "us_per_dlr": round(per_report * 1e6, 1), "statements": rows}
    print(f"results {write_result('statements', result)}")


if __name__ == "__main__":
    main()
