"""A per-account token bucket for provider requests, and the failed-authentication throttle."""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from service.errors import SmsgwError, TooManyRequests


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

    def try_acquire(self, count: int = 1) -> bool:
        """Take `count` tokens as `acquire` would, but only if that needs no wait."""
        if self._lock.locked():
            return False
        self._refill()
        if self._tokens < min(float(count), self._capacity):
            return False
        self._tokens -= count
        return True

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self._capacity, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now


# The credential surfaces failures are counted on. The API and the console sign-in
# check the same tokens, so guesses at either count together.
API_AUTH = "api"
CALLBACK_AUTH = "callback"


class FailedAuthentications:
    """Failed authentications per client address and credential surface, in a window.

    Only failures are throttled. A request whose credential is valid is served
    whatever its address failed before: a provider behind an address it shares with
    a guesser keeps delivering reports, an operator keeps signing in, and health
    checks, which present no credential, are never touched. A wrong credential past
    `limit` failures in `window` seconds gets 429 instead of its 401/403 until the
    window, which starts at the first failure, ends.

    Addresses are the peer's own (behind a proxy, the proxy's); the table holds at
    most `max_entries` (address, surface) pairs, dropping the oldest first.
    """

    def __init__(
        self,
        limit: int,
        window: float,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limit = limit
        self._window = window
        self._max_entries = max_entries
        self._clock = clock
        self._failures: OrderedDict[tuple[str, str], tuple[float, int]] = OrderedDict()

    def refusal(self, address: str, surface: str, error: SmsgwError) -> SmsgwError:
        """What to answer a failed authentication with: `error`, counted, or a 429
        once this address has used up its failures on this surface."""
        key = (address, surface)
        now = self._clock()
        started, count = self._failures.pop(key, (now, 0))
        if now - started >= self._window:
            started, count = now, 0
        if count >= self._limit:
            self._failures[key] = (started, count)
            wait = max(1, math.ceil(self._window - (now - started)))
            return TooManyRequests(
                "too many failed authentications; wait and retry", retry_after=wait
            )
        self._failures[key] = (started, count + 1)
        while len(self._failures) > self._max_entries:
            self._failures.popitem(last=False)
        return error
