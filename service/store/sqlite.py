"""The SQLite Store: WAL, versioned migrations, group commit, statements run inline.

All writes go through one connection and one writer task. The writer takes every
job waiting in its queue, runs each inside its own savepoint, and commits them with
a single COMMIT (one fsync): under load many callbacks share the cost of durability,
and each caller is answered only after the commit that holds its work. The group
also shares its writes to the events and counters tables, one statement each (see
`_Group`). Reads use a second connection (aiosqlite, in its own thread), which WAL
lets run beside the writer. The single writer orders every transaction, so row locks
are not needed and events are committed in id order.

The writer's statements run on the event loop itself, not in a thread: each takes
microseconds on an indexed table, while a thread must win the GIL back from a busy
loop to hand its result over, which takes up to the interpreter's switch interval
(5 ms) twice a group, and held every callback's 2xx behind it. BEGIN IMMEDIATE is
tried without waiting and goes to a thread only when another process holds the write
lock; COMMIT (an fsync of the WAL) runs inline. WAL checkpoints, which can copy many
pages, are taken off the commit: a thread of its own runs them every second.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from service.errors import Unavailable
from service.model import Event
from service.sealing import Sealer
from service.store.protocol import EventSink
from service.store.schema import migrate
from service.store.sql import SqlStore
from service.store.tx import Row, Tx, finite, write_counters

T = TypeVar("T")

_AUTO_ID = "INTEGER PRIMARY KEY AUTOINCREMENT"
TYPES = {"id": _AUTO_ID, "event_id": _AUTO_ID, "bigint": "INTEGER", "real": "REAL"}


class _Group:
    """What the jobs of one commit group add to the events and counters tables.

    Written with one statement each just before the group's COMMIT, rather than two
    or three for every job: a job's share is taken only once its savepoint is
    released, so a job that failed adds nothing. Event ids are handed out here, the
    write lock making this writer the only one that can.
    """

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._last_event_id: int | None = None
        self._event_rows: list[tuple[Any, ...]] = []
        # Collects the jobs' counter changes the way each job's own Tx does.
        self._tx = _SqliteTx(db, self)
        self.events: list[Event] = []

    def next_event_id(self) -> int:
        if self._last_event_id is None:
            # AUTOINCREMENT's own record: an id is never used twice, not even one
            # whose event was pruned.
            row = self._db.execute(
                "SELECT seq FROM sqlite_sequence WHERE name = 'events'"
            ).fetchone()
            self._last_event_id = row[0] if row else 0
        self._last_event_id += 1
        return self._last_event_id

    def take(self, tx: _SqliteTx) -> None:
        self._event_rows.extend(tx.event_rows)
        self.events.extend(tx.events)
        self._tx.merge_counters(tx.take_counters())

    async def write(self) -> None:
        await self._tx.executemany(
            "INSERT INTO events (id, ts, event, message_id, account, data) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            self._event_rows,
        )
        await write_counters(self._tx, self._tx.take_counters())


class _SqliteTx(Tx):
    """Statements of the open write transaction, run inline (see the module's doc)."""

    def __init__(self, db: sqlite3.Connection, group: _Group) -> None:
        super().__init__()
        self._db = db
        self._group = group
        self.event_rows: list[tuple[Any, ...]] = []

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self._db.execute(sql, finite(params)).rowcount

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self._db.executemany(sql, [finite(row) for row in rows])

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return self._db.execute(sql, params).fetchall()

    async def insert(self, sql: str, params: Sequence[Any]) -> int:
        cursor = self._db.execute(sql, finite(params))
        return (cursor.lastrowid or 0) if cursor.rowcount else 0

    async def _store_event(
        self, ts: str, name: str, message_id: str, account: str, data: str
    ) -> int:
        event_id = self._group.next_event_id()
        self.event_rows.append((event_id, ts, name, message_id, account, data))
        return event_id

    async def finish(self) -> None:
        self._group.take(self)


@dataclass(slots=True)
class _Job:
    work: Callable[[Tx], Awaitable[Any]]
    future: asyncio.Future[Any]


class SqliteStore(SqlStore):
    CONNECTION: type[sqlite3.Connection] = sqlite3.Connection
    """The writer connection's class; bench.statements times every statement with it."""

    def __init__(
        self,
        path: Path,
        on_events: EventSink | None = None,
        *,
        busy_timeout: float = 10.0,
        sealer: Sealer | None = None,
    ) -> None:
        super().__init__(on_events, sealer)
        self._path = path
        self._busy_ms = int(busy_timeout * 1000)
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._writer_task: asyncio.Task[None] | None = None
        self._checkpoint_task: asyncio.Task[None] | None = None
        self._write_db: sqlite3.Connection | None = None
        self._read_db: aiosqlite.Connection | None = None

    async def open(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._write_db = await asyncio.to_thread(self._connect_writer)
        await self._migrate(self._write_db)
        self._read_db = await aiosqlite.connect(self._path, isolation_level=None)
        for pragma in self._pragmas():
            await self._read_db.execute(f"PRAGMA {pragma}")
        self._writer_task = asyncio.create_task(self._write_loop(), name="sqlite-writer")
        self._checkpoint_task = asyncio.create_task(self._checkpoints(), name="sqlite-checkpoint")

    def _pragmas(self) -> tuple[str, ...]:
        # FULL: a callback is acknowledged only after its commit reached the disk.
        return ("journal_mode=WAL", "synchronous=FULL", f"busy_timeout={self._busy_ms}")

    def _connect_writer(self) -> sqlite3.Connection:
        # Used from the loop and, for a BEGIN that must wait, from a worker thread, but
        # never from two at once: the writer task awaits each before the next.
        db = sqlite3.connect(
            self._path, isolation_level=None, check_same_thread=False, factory=self.CONNECTION
        )
        for pragma in self._pragmas():
            db.execute(f"PRAGMA {pragma}")
        # Checkpoints are _checkpoints' job, not a COMMIT's.
        db.execute("PRAGMA wal_autocheckpoint=0")
        return db

    async def _begin(self, db: sqlite3.Connection) -> None:
        """BEGIN IMMEDIATE: at once when no other process writes, else in a thread that
        waits up to busy_timeout for its lock, so that the loop never blocks on it."""
        db.execute("PRAGMA busy_timeout=0")
        try:
            db.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError:
            pass
        finally:
            db.execute(f"PRAGMA busy_timeout={self._busy_ms}")
        await asyncio.to_thread(db.execute, "BEGIN IMMEDIATE")

    async def _checkpoints(self) -> None:
        checkpointer = await asyncio.to_thread(self._connect_checkpointer)
        try:
            while True:
                await asyncio.sleep(1.0)
                # PASSIVE: copies what it can without waiting for, or blocking, anyone.
                await asyncio.to_thread(checkpointer.execute, "PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            checkpointer.close()

    def _connect_checkpointer(self) -> sqlite3.Connection:
        db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        db.execute(f"PRAGMA busy_timeout={self._busy_ms}")
        return db

    async def _migrate(self, db: sqlite3.Connection) -> None:
        # BEGIN IMMEDIATE is the lock that migrate() asks for: a second process
        # starting at the same time waits for it.
        await asyncio.to_thread(db.execute, "BEGIN IMMEDIATE")
        try:
            group = _Group(db)
            tx = _SqliteTx(db, group)
            await migrate(tx, TYPES)
            await tx.finish()
            await group.write()
            await asyncio.to_thread(db.execute, "COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    async def close(self) -> None:
        tasks = [t for t in (self._writer_task, self._checkpoint_task) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._write_db is not None:
            self._write_db.close()
        if self._read_db is not None:
            await self._read_db.close()

    async def ping(self) -> bool:
        try:
            await self._fetchall("SELECT 1")
        except (sqlite3.Error, ValueError):
            return False
        return self._writer_task is not None and not self._writer_task.done()

    # -- plumbing --------------------------------------------------------------

    async def _write(self, work: Callable[[Tx], Awaitable[T]]) -> T:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Job(work, future))
        return await future

    async def _write_loop(self) -> None:
        assert self._write_db is not None
        db = self._write_db
        while True:
            jobs = [await self._queue.get()]
            while not self._queue.empty() and len(jobs) < 512:
                jobs.append(self._queue.get_nowait())
            await self._commit_group(db, jobs)

    async def _commit_group(self, db: sqlite3.Connection, jobs: list[_Job]) -> None:
        outcomes: list[tuple[bool, Any]] = []
        group = _Group(db)
        try:
            await self._begin(db)
            for job in jobs:
                tx = _SqliteTx(db, group)
                db.execute("SAVEPOINT job")
                try:
                    result = await self._work(tx, job.work)
                except Exception as exc:
                    db.execute("ROLLBACK TO job")
                    db.execute("RELEASE job")
                    outcomes.append((False, exc))
                    continue
                db.execute("RELEASE job")
                await tx.finish()
                outcomes.append((True, result))
            await group.write()
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            failure = Unavailable(f"the store could not commit: {exc}")
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(failure)
            return
        for job, (ok, value) in zip(jobs, outcomes, strict=True):
            if job.future.done():
                continue
            if ok:
                job.future.set_result(value)
            else:
                job.future.set_exception(value)
        if group.events:
            self._on_events(group.events)

    async def _fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[Row]:
        assert self._read_db is not None
        return list(await self._read_db.execute_fetchall(sql, tuple(params)))  # type: ignore[arg-type]
