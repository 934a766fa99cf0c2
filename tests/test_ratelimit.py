"""The per-account token bucket, on a clock the test drives: every wait the bucket asks
for is recorded and then passes in no time, so the assertions are about the waits
themselves, not about how busy the machine was (wall-clock figures: bench/ratelimit.py)."""

from __future__ import annotations

import pytest

from service.ratelimit import TokenBucket


class ManualClock:
    """Time that moves only when the bucket sleeps (or the test advances it)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def bucket(self, rate: float) -> TokenBucket:
        return TokenBucket(rate, clock=self, sleep=self.sleep)


async def test_a_burst_of_one_seconds_worth_passes_at_once() -> None:
    clock = ManualClock()
    bucket = clock.bucket(50)
    for _ in range(50):
        await bucket.acquire()
    assert clock.sleeps == []


async def test_beyond_the_burst_the_rate_holds() -> None:
    clock = ManualClock()
    bucket = clock.bucket(100)
    await bucket.acquire(100)
    await bucket.acquire(10)
    await bucket.acquire(10)
    # Two batches of ten at 100/s out of an empty bucket: a tenth of a second each.
    assert clock.sleeps == pytest.approx([0.1, 0.1])
    assert clock.now - 1000.0 == pytest.approx(0.2)


async def test_the_first_request_past_the_burst_waits_its_turn() -> None:
    clock = ManualClock()
    bucket = clock.bucket(5)
    await bucket.acquire(5)
    await bucket.acquire()
    assert clock.sleeps == pytest.approx([0.2])


async def test_time_that_passed_refills_the_bucket_and_no_more_than_a_burst() -> None:
    clock = ManualClock()
    bucket = clock.bucket(10)
    await bucket.acquire(10)
    clock.now += 0.5  # half a second idle: five tokens back
    await bucket.acquire(5)
    assert clock.sleeps == []
    clock.now += 3600  # an idle hour refills one second's worth, not an hour's
    await bucket.acquire(10)
    await bucket.acquire(1)
    assert clock.sleeps == pytest.approx([0.1])


async def test_a_batch_larger_than_the_burst_waits_for_a_full_bucket_then_leaves_debt() -> None:
    clock = ManualClock()
    bucket = clock.bucket(10)
    await bucket.acquire(10)
    await bucket.acquire(25)  # waits for ten tokens (1 s), goes, and owes fifteen
    await bucket.acquire(1)  # the debt plus one token: 1.6 s
    assert clock.sleeps == pytest.approx([1.0, 1.6])
