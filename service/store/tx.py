"""The transaction every store function works in, and the counters it writes last.

A backend (sqlite.py, postgres.py) subclasses `Tx` with its connection and its few
dialect differences: row locks (none on SQLite, whose single writer already
serializes every transaction), named locks, and how event ids are handed out.

Locking order, so that concurrent transactions on PostgreSQL cannot deadlock in the
common paths: named locks on match keys first, then message rows, and the counters
rows last of all, written once at the end of each transaction (`Tx.finish`).
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar

from service import reconcile
from service.clock import iso_now
from service.model import Counters, Event

Row = tuple[Any, ...]
Read = Callable[[str, Iterable[Any]], Awaitable[list[Row]]]
"""A read outside any write transaction: SQL with `?` placeholders and its values."""

IN_CHUNK = 500
"""How many values one `IN (...)` list holds at most."""

CounterKey = tuple[str, str]
"""(counters table, the account or client it keeps counters for)."""
ACCOUNTS, CLIENTS = "counters", "client_counters"


def _counter_upsert(table: str, key: str) -> str:
    names = reconcile.COUNTER_NAMES
    added = ", ".join(f"{n} = {table}.{n} + excluded.{n}" for n in names)
    return (
        f"INSERT INTO {table} ({key}, {', '.join(names)}) "
        f"VALUES (?, {', '.join('?' for _ in names)}) "
        f"ON CONFLICT({key}) DO UPDATE SET {added}"
    )


_COUNTER_UPSERTS = {
    ACCOUNTS: _counter_upsert(ACCOUNTS, "account"),
    CLIENTS: _counter_upsert(CLIENTS, "client"),
}


def finite(params: Sequence[Any]) -> Sequence[Any]:
    """`params`, after making sure no float among them is infinite or NaN: such a value
    would keep an outbox row from ever coming due, and no JSON view could show it."""
    for value in params:
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"refusing to store the non-finite number {value}")
    return params


def placeholders(n: int) -> str:
    return ", ".join("?" for _ in range(n))


def key_lock(account: str, key: tuple[str, str]) -> str:
    """The named lock that orders a report against the send response it matches."""
    return f"report:{account}:{key[0]}:{key[1]}"


class Tx(ABC):
    """One transaction: SQL with `?` placeholders, plus the events and counter
    changes it writes. Rows are tuples in the order of the selected columns."""

    FOR_UPDATE: ClassVar[str] = ""
    """Appended to a SELECT whose rows the transaction goes on to change."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._counters: dict[CounterKey, Counters] = {}
        self._now = ""

    def now(self) -> str:
        """The transaction's moment: every timestamp it writes is the same one."""
        if not self._now:
            self._now = iso_now()
        return self._now

    @abstractmethod
    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; returns how many rows it changed."""

    @abstractmethod
    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...

    @abstractmethod
    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    @abstractmethod
    async def insert(self, sql: str, params: Sequence[Any]) -> int:
        """Insert one row into a table keyed by `id`; its id, or 0 when ON CONFLICT
        DO NOTHING skipped it."""

    async def lock(self, name: str) -> None:
        """Hold a lock on `name` until the transaction ends, for rows that may not
        exist yet; the single SQLite writer needs none."""
        return None

    async def lock_all(self, names: Sequence[str]) -> None:
        """`lock` on each of `names`, in sorted order so that two transactions taking
        overlapping sets cannot deadlock."""
        for name in sorted(set(names)):
            await self.lock(name)

    def skip_locked(self, table: str) -> str:
        """Appended to a claim's SELECT: rows another transaction is claiming are
        left to it rather than waited for."""
        return ""

    def among(
        self, column: str, values: Sequence[str] | Sequence[int]
    ) -> tuple[str, tuple[Any, ...]]:
        """A condition that `column` is one of `values` (at most IN_CHUNK of them, all
        text or all integers), and its parameters."""
        return f"{column} IN ({placeholders(len(values))})", tuple(values)

    @abstractmethod
    async def _store_event(
        self, ts: str, name: str, message_id: str, account: str, data: str
    ) -> int:
        """Write one event; returns its id."""

    async def event(self, name: str, message_id: str = "", account: str = "", **data: Any) -> Event:
        ts = self.now()
        event_id = await self._store_event(
            ts, name, message_id, account, json.dumps(data, separators=(",", ":"), allow_nan=False)
        )
        event = Event(name, ts, message_id, account, data, event_id)
        self.events.append(event)
        return event

    def add_counters(self, account: str, delta: Counters, client: str | None = None) -> None:
        """A message's counter change, for its account and, sent with a client's key,
        for its client too."""
        self.merge_counters({(ACCOUNTS, account): delta})
        if client is not None:
            self.merge_counters({(CLIENTS, client): delta})

    def merge_counters(self, changes: Mapping[CounterKey, Counters]) -> None:
        for key, delta in changes.items():
            self._counters[key] = self._counters.get(key, Counters()) + delta

    def take_counters(self) -> dict[CounterKey, Counters]:
        """The counter changes collected so far, handed over once."""
        counters, self._counters = self._counters, {}
        return counters

    async def finish(self) -> None:
        """Write what the transaction collected, just before it commits."""
        await write_counters(self, self.take_counters())


async def write_counters(tx: Tx, changes: Mapping[CounterKey, Counters]) -> None:
    """Add counter changes to the counters tables, in table and then name order."""
    for table, upsert in sorted(_COUNTER_UPSERTS.items()):
        rows = [
            (name, *delta.as_tuple())
            for (kind, name), delta in sorted(changes.items())
            if kind == table and not delta.is_zero()
        ]
        if rows:
            await tx.executemany(upsert, rows)
