"""Client keys to principals, fast: a key found in the store is remembered briefly.

A request's key is looked up by its SHA-256 digest. Found keys are cached for `ttl`
seconds, so a busy client costs one read a second, not one a request; a change made
in this process (`forget`) takes effect at once, one made by another process sharing
the store within `ttl`. Keys not found are never cached: a key just issued works at
once. When a key was last used is written at most once per `touch_every` per key.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable, Sequence

from service.clock import iso_now
from service.principals import Principal

Lookup = Callable[[str], Awaitable[Principal | None]]
Touch = Callable[[Sequence[tuple[str, str]]], Awaitable[None]]


def digest(key: str | bytes) -> str:
    """What the store keeps of a key: its SHA-256. Keys are 256 random bits, so an
    unsalted fast hash is enough, and it lets a request find its key by one lookup."""
    raw = key.encode() if isinstance(key, str) else key
    return hashlib.sha256(raw).hexdigest()


class KeyResolver:
    def __init__(self, ttl: float = 1.0, touch_every: float = 60.0) -> None:
        self._ttl = ttl
        self._touch_every = touch_every
        self._lookup: Lookup | None = None
        self._touch: Touch | None = None
        self._found: dict[str, tuple[Principal, float]] = {}
        self._touched: dict[str, float] = {}
        self._generation = 0

    def bind(self, lookup: Lookup, touch: Touch) -> None:
        """Made before the store opens (the middleware needs it first); bound once it has."""
        self._lookup, self._touch = lookup, touch
        self.forget()

    def forget(self) -> None:
        """Drop every cached key: a client or key changed in this process."""
        self._found.clear()
        self._generation += 1

    async def resolve(self, digest: str) -> Principal | None:
        if self._lookup is None:
            return None
        now = time.monotonic()
        cached = self._found.get(digest)
        if cached is not None and now - cached[1] < self._ttl:
            principal: Principal | None = cached[0]
        else:
            generation = self._generation
            principal = await self._lookup(digest)
            self._found.pop(digest, None)
            # A change made while the lookup ran may have made its answer stale.
            if principal is not None and generation == self._generation:
                self._found[digest] = (principal, now)
        if principal is not None:
            await self._touched_now(principal.key_id, now)
        return principal

    async def _touched_now(self, key_id: str, now: float) -> None:
        last = self._touched.get(key_id)
        if self._touch is None or (last is not None and now - last < self._touch_every):
            return
        self._touched[key_id] = now
        await self._touch([(key_id, iso_now())])
