"""The token bucket against the wall clock: what tests/test_ratelimit.py checks on a
clock it drives, measured here on the real one.

    .venv/bin/python -m bench.ratelimit [--rate 100] [--rounds 20]

Figures: how long a burst of one second's worth takes (target: well under a tenth of
a second), and the rate achieved past the burst (target: the configured rate).
"""

from __future__ import annotations

import argparse
import asyncio
import time

from bench.common import write_result
from service.ratelimit import TokenBucket


async def burst_seconds(rate: int) -> float:
    bucket = TokenBucket(rate)
    started = time.perf_counter()
    for _ in range(rate):
        await bucket.acquire()
    return time.perf_counter() - started


async def sustained_rate(rate: int, rounds: int) -> float:
    """Messages a second through an empty bucket, in batches of a tenth of the rate."""
    bucket = TokenBucket(rate)
    await bucket.acquire(rate)
    batch = max(1, rate // 10)
    started = time.perf_counter()
    for _ in range(rounds):
        await bucket.acquire(batch)
    return batch * rounds / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    burst = asyncio.run(burst_seconds(args.rate))
    achieved = asyncio.run(sustained_rate(args.rate, args.rounds))
    print(f"burst of {args.rate}   {burst * 1e3:8.2f} ms (target < 50 ms)")
    print(f"sustained       {achieved:8.1f} /s (target <= {args.rate} /s)")
    path = write_result(
        "ratelimit",
        {"rate": args.rate, "burst_ms": round(burst * 1e3, 3), "sustained": round(achieved, 1)},
    )
    print(f"results         {path}")


if __name__ == "__main__":
    main()
