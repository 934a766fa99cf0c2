"""A per-account token bucket for provider requests."""

from __future__ import annotations

import asyncio
import time


class TokenBucket:
    """`rate` messages a second, with bursts up to one second's worth.

    A batch larger than the burst waits for a full bucket, then goes and leaves the
    bucket in debt, so big batches are never starved and the average rate still holds.
    """

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._capacity = max(rate, 1.0)
        self._tokens = self._capacity
        self._stamp = time.monotonic()
        self._lock = asyncio.Lock()

    async def acquire(self, count: int = 1) -> None:
        async with self._lock:
            self._refill()
            needed = min(float(count), self._capacity)
            if self._tokens < needed:
                await asyncio.sleep((needed - self._tokens) / self.rate)
                self._refill()
            self._tokens -= count

    def _refill(self) -> None:
        now = time.monotonic()
        self._tokens = min(self._capacity, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
