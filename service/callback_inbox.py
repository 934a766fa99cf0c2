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


class Appender:
    """Group commit for callbacks: each `append` returns once its entry is durable."""

    def __init__(self, store: Store, appended: Callable[[int], None]) -> None:
        self._store = store
        self._appended = appended
        self._waiting: list[tuple[InboxEntry, asyncio.Future[None]]] = []
        self._writing = False
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
            while self._waiting:
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
    """Applies stored callbacks, oldest first, until none wait; then sleeps until woken."""

    def __init__(self, store: Store, batch: int, retention: float, poll: float = 0.5) -> None:
        self._store = store
        self._batch = batch
        self._retention = retention
        self._poll = poll
        self._wake = asyncio.Event()
        self._pruned_at = 0.0
        self._measured_at = 0.0
        self.depth = 0
        """Callbacks waiting, as last counted plus this process's appends since."""

    def appended(self, count: int) -> None:
        self.depth += count
        self._wake.set()

    async def run(self) -> None:
        await run_passes(self.run_once, self._idle, "inbox.apply_failed")

    async def run_once(self) -> bool:
        applied = await self._store.apply_inbox(self._batch)
        self.depth = max(0, self.depth - applied)
        if not applied or time.monotonic() - self._measured_at > 1.0:
            # Other processes append and apply too: count now and then.
            self._measured_at = time.monotonic()
            self.depth = (await self._store.inbox_depth())[0]
        if time.monotonic() - self._pruned_at > 3600:
            self._pruned_at = time.monotonic()
            await self._store.prune_inbox(time.time() - self._retention)
        return applied > 0

    async def drain(self) -> None:
        """Apply until nothing waits (tests and `smsgw` commands that need it done)."""
        while await self.run_once():
            pass

    async def _idle(self) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self._poll)
