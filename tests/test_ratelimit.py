"""The per-account token bucket."""

from __future__ import annotations

import time

from service.ratelimit import TokenBucket


async def test_a_burst_of_one_seconds_worth_passes_at_once() -> None:
    bucket = TokenBucket(rate=50)
    started = time.monotonic()
    for _ in range(50):
        await bucket.acquire()
    assert time.monotonic() - started < 0.05


async def test_beyond_the_burst_the_rate_holds() -> None:
    bucket = TokenBucket(rate=100)
    await bucket.acquire(100)
    started = time.monotonic()
    await bucket.acquire(10)
    await bucket.acquire(10)
    assert time.monotonic() - started >= 0.09


async def test_the_first_request_past_the_burst_waits_its_turn() -> None:
    bucket = TokenBucket(rate=5)
    await bucket.acquire(5)
    started = time.monotonic()
    await bucket.acquire()
    assert time.monotonic() - started >= 0.18
