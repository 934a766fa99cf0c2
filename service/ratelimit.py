"""Token buckets (a per-account one for provider requests; the arithmetic a client's
shared bucket in the store uses too), and the failed-authentication throttle."""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from service.errors import SmsgwError, TooManyRequests


def capacity(rate: float) -> float:
    """A bucket of `rate` a second holds one second's worth, and at least one."""
    return max(rate, 1.0)


def refilled(tokens: float, elapsed: float, rate: float) -> float:
    """The tokens of a bucket `elapsed` seconds after it held `tokens`; time that ran
    backwards (clocks of two hosts) adds nothing."""
    return min(capacity(rate), tokens + max(0.0, elapsed) * rate)


def wait_for(tokens: float, count: int, rate: float) -> float:
    """Seconds until a bucket holding `tokens` may let `count` go: a batch larger than
    the bucket needs it full, then goes and leaves it in debt."""
    return max(0.0, min(float(count), capacity(rate)) - tokens) / rate


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
        self._tokens = capacity(rate)
        self._clock = clock
        self._sleep = sleep
        self._stamp = clock()
        self._lock = asyncio.Lock()

    async def acquire(self, count: int = 1) -> None:
        async with self._lock:
            self._refill()
            wait = wait_for(self._tokens, count, self.rate)
            if wait > 0:
                await self._sleep(wait)
                self._refill()
            self._tokens -= count

    def try_acquire(self, count: int = 1) -> bool:
        """Take `count` tokens as `acquire` would, but only if that needs no wait."""
        if self._lock.locked():
            return False
        self._refill()
        if wait_for(self._tokens, count, self.rate) > 0:
            return False
        self._tokens -= count
        return True

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = refilled(self._tokens, now - self._stamp, self.rate)
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
