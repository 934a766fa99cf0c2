"""The callback inbox in a running process: appends committed in groups, and the
applier that turns stored callbacks into status changes.

A delivery-report callback waits only for `Appender.append`: its entry joins the
group being written, and the provider's 2xx follows that group's commit. While one
group commits, the next gathers, so under load many callbacks share one commit (one
fsync on SQLite, one round trip on PostgreSQL). The `Applier` runs in every `serve`
and `worker` process: it applies stored callbacks in batches of `[inbox] batch`,
woken by this process's appends and looking every `poll` seconds for other
processes' (PostgreSQL).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from service.model import InboxEntry
from service.store import Store
from service.worker import run_passes

GROUP_LIMIT = 1000
"""Callbacks one commit group holds at most."""
_GATHER_PASSES = 3


class Appender:
    """Group commit for callbacks: each `append` returns once its entry is durable."""

    def __init__(self, store: Store, appended: Callable[[int], None]) -> None:
        self._store = store
        self._appended = appended
        self._waiting: list[tuple[InboxEntry, asyncio.Future[None]]] = []
        self._writing = False
        # Held so that the loop, which keeps only weak references, cannot drop it.
        self._task: asyncio.Task[None] | None = None

    async def append(self, entry: InboxEntry) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((entry, future))
        if not self._writing:
            self._writing = True
            self._task = asyncio.create_task(self._write_groups(), name="inbox-append")
        await future

    async def _write_groups(self) -> None:
        try:
            while True:
                # Requests already read reach their append within a pass or two of the
                # loop: they join this group, and every commit (an fsync, made on the
                # loop) is paid by as many callbacks as can share it.
                for _ in range(_GATHER_PASSES):
                    await asyncio.sleep(0)
                if not self._waiting:
                    break
                group = self._waiting[:GROUP_LIMIT]
                del self._waiting[:GROUP_LIMIT]
                try:
                    await self._store.append_inbox([entry for entry, _ in group])
                except Exception as exc:  # every waiting callback learns of it: a 503
                    for _, future in group:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for _, future in group:
                    if not future.done():
                        future.set_result(None)
                self._appended(len(group))
        finally:
            self._writing = False


class Applier:
    """Applies stored callbacks, oldest first, until none wait; then sleeps until woken.

    Acknowledging comes first: while this process is taking callbacks, the applier
    takes small batches (each holds the loop, and answers wait behind it) and uses at
    most `busy_share` of the loop's time (it rests in proportion to each batch's
    time); once they stop, it applies full batches without rest, so that a burst is
    acknowledged near the speed of a bare app and applied right after it. A backlog
    is never left to grow unseen: past a quarter of `max_depth` waiting, or after
    `max_lag / 2` seconds of resting under load, it stops resting.
    """

    BUSY_WINDOW = 0.05
    """Seconds since the last append during which this process counts as busy."""
    BUSY_BATCH = 50
    """Callbacks a batch takes while busy: each batch holds the loop, and every
    callback's answer waits behind it (about 7 ms for 50 here)."""

    def __init__(
        self,
        store: Store,
        batch: int,
        retention: float,
        *,
        busy_share: float = 1.0,
        max_depth: int = 1 << 62,
        max_lag: float = float("inf"),
        poll: float = 0.5,
    ) -> None:
        self._store = store
        self._batch = batch
        self._retention = retention
        self._busy_share = busy_share
        self._max_depth = max_depth
        self._max_lag = max_lag
        self._poll = poll
        self._wake = asyncio.Event()
        self._pruned_at = 0.0
        self._measured_at = 0.0
        self._appended_at = float("-inf")
        self._resting_since: float | None = None
        self.depth = 0
        """Callbacks waiting, as last counted plus this process's appends since."""

    def appended(self, count: int) -> None:
        self.depth += count
        self._appended_at = time.monotonic()
        self._wake.set()

    async def run(self) -> None:
        await run_passes(self.run_once, self._idle, "inbox.apply_failed")

    def _busy(self) -> bool:
        """Whether this process is taking callbacks now."""
        return time.monotonic() - self._appended_at < self.BUSY_WINDOW

    async def run_once(self) -> bool:
        started = time.monotonic()
        applied = await self._store.apply_inbox(
            min(self._batch, self.BUSY_BATCH) if self._busy() else self._batch
        )
        took = time.monotonic() - started
        self.depth = max(0, self.depth - applied)
        if not applied or time.monotonic() - self._measured_at > 1.0:
            # Other processes append and apply too: count now and then.
            self._measured_at = time.monotonic()
            self.depth = (await self._store.inbox_depth())[0]
        if time.monotonic() - self._pruned_at > 3600:
            self._pruned_at = time.monotonic()
            await self._store.prune_inbox(time.time() - self._retention)
        if applied:
            await self._rest(took)
        return applied > 0

    def _throttled(self) -> bool:
        """Whether to rest, giving way to acknowledging."""
        if not self._busy() or self._busy_share >= 1.0 or self.depth * 4 > self._max_depth:
            self._resting_since = None
            return False
        now = time.monotonic()
        if self._resting_since is None:
            self._resting_since = now
        return now - self._resting_since < self._max_lag / 2

    async def _rest(self, took: float) -> None:
        if self._throttled():
            await asyncio.sleep(took * (1 / self._busy_share - 1))

    async def _idle(self) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self._poll)
