"""Writes that arrive while one is running go together in the next.

The dispatcher records each request's results as the request ends; sixteen requests
ending together would be sixteen transactions. A `Coalescer` runs one write at a
time, and whatever was submitted meanwhile goes as one write after it: under load
the writes grow, idle each goes at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


class Coalescer(Generic[T]):
    def __init__(self, write: Callable[[Sequence[T]], Awaitable[None]]) -> None:
        self._write = write
        self._waiting: list[tuple[list[T], asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, items: Sequence[T]) -> None:
        """Write `items`, with whatever else is waiting; returns once they are written,
        or raises what writing them alone raised."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((list(items), future))
        if self._writer is None:
            # A task of its own: a caller that is cancelled must not strand the others.
            self._writer = asyncio.create_task(self._drain())
        await asyncio.shield(future)

    async def _drain(self) -> None:
        try:
            while self._waiting:
                taken, self._waiting = self._waiting, []
                await self._write_all(taken)
        finally:
            self._writer = None

    async def _write_all(self, taken: list[tuple[list[T], asyncio.Future[None]]]) -> None:
        try:
            await self._write([item for items, _ in taken for item in items])
        except Exception as exc:
            if len(taken) == 1:
                taken[0][1].set_exception(exc)
                return
            # One caller's bad item must not fail the others: each goes alone.
            for items, future in taken:
                try:
                    await self._write(items)
                except Exception as alone:
                    future.set_exception(alone)
                else:
                    future.set_result(None)
            return
        for _, future in taken:
            future.set_result(None)
