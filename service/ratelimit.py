"""A per-account token bucket for provider requests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class TokenBucket:
    """`rate` messages a second, with bursts up to one second's worth.

    A batch larger than the burst waits for a full bucket, then goes and leaves the
    bucket in debt, so big batches are never starved and the average rate still holds.
    `clock` and `sleep` are the wall clock unless a test drives time itself.
    """

    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.rate = rate
        self._capacity = max(rate, 1.0)
        self._tokens = self._capacity
        self._clock = clock
        self._sleep = sleep
        self._stamp = clock()
        self._lock = asyncio.Lock()

    async def acquire(self, count: int = 1) -> None:
        async with self._lock:
            self._refill()
            needed = min(float(count), self._capacity)
            if self._tokens < needed:
                await self._sleep((needed - self._tokens) / self.rate)
                self._refill()
            self._tokens -= count

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self._capacity, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
