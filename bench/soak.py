"""A long run of callbacks against one smsgw process: its memory at start and end.

    .venv/bin/python -m bench.soak [--callbacks 1000000] [--connections 32]

smsgw (SQLite) is preloaded with one submitted message per callback; wrk sends each
its Connectel DLR once. RSS is read after a warm-up (imports, caches and SQLite's page
cache filled) and after the last callback; the figure is the growth between them.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from bench.common import TOKEN, dlr_url, preload, serving_smsgw, write_result, wrk

WARM_UP = 20_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--callbacks", type=int, default=1_000_000)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    # wrk may start a few requests past its limit before it stops: room for them.
    total = args.callbacks + WARM_UP + 1000
    data = Path(tempfile.mkdtemp(prefix="smsgw-bench-soak-"))
    started = time.perf_counter()
    asyncio.run(preload(data, total))
    print(f"preloaded {total} messages in {time.perf_counter() - started:.0f} s")
    samples: list[tuple[float, float]] = []
    with serving_smsgw(data) as smsgw:
        url = dlr_url(smsgw.url)

        def delivered() -> int:
            answer = httpx.get(
                smsgw.url + "/v1/stats", headers={"Authorization": f"Bearer {TOKEN}"}
            )
            return int(answer.json()["total"]["delivered"])

        def stopped() -> Callable[[], bool]:
            """True once wrk's threads hit their limit: no report delivered for 1 s.
            (A thread stops with its last requests unsent, so no exact count waits.)"""
            last_count, last_change = -1, time.monotonic()

            def check() -> bool:
                nonlocal last_count, last_change
                now, count = time.monotonic(), delivered()
                if count != last_count:
                    last_count, last_change = count, now
                return count > 0 and now - last_change > 1.0

            return check

        wrk(
            url,
            seconds=600,
            connections=args.connections,
            start=args.callbacks,
            limit=WARM_UP,
            until=stopped(),
        )
        rss_start = smsgw.rss_mib()
        done = threading.Event()

        def sample() -> None:
            begun = time.monotonic()
            while not done.wait(10):
                samples.append((round(time.monotonic() - begun), round(smsgw.rss_mib(), 1)))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        run = wrk(
            url,
            seconds=3600,
            connections=args.connections,
            limit=args.callbacks,
            until=stopped(),
        )
        done.set()
        rss_end = smsgw.rss_mib()
        final = delivered()
    growth = rss_end / rss_start - 1
    print(f"callbacks {run.requests} in {run.seconds:.0f} s ({run.throughput:.0f}/s)")
    print(f"latency   p50 {run.p50_ms:.1f} ms, p99 {run.p99_ms:.1f} ms")
    print(f"rss       {rss_start:.1f} MiB after warm-up, {rss_end:.1f} MiB at the end")
    print(f"growth    {growth * 100:+.1f}% (target <= 10%)")
    print(f"delivered {final} of {total} messages; errors {run.errors}, non-2xx {run.non_2xx}")
    path = write_result(
        "soak",
        {
            "callbacks": run,
            "rss_mib_start": round(rss_start, 1),
            "rss_mib_end": round(rss_end, 1),
            "growth": round(growth, 4),
            "samples": samples,
            "delivered": final,
        },
    )
    print(f"results   {path}")


if __name__ == "__main__":
    main()
