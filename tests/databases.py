"""The stores tests run against: SQLite files, and a PostgreSQL database for the session.

PostgreSQL comes from SMSGW_TEST_DATABASE_URL, or else from the local server on
127.0.0.1:5432 (started when it is down and pg_ctlcluster exists), in a database
created for this session and dropped after it. Each test gets a schema of its own,
named in its DATABASE_URL's search_path: creating one takes a millisecond, where a
database per test would take far longer.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shutil
import sqlite3
import subprocess
import threading
from collections.abc import AsyncIterator, Coroutine
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

from service.settings import Settings
from service.store.postgres import dollar_params

T = TypeVar("T")

LOCAL_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
_CLUSTERS = Path("/etc/postgresql")


class TestDatabase:
    """A PostgreSQL database for this session, reached from a loop of its own so that
    any test (sync or async, on any event loop) can ask for a fresh schema."""

    __test__ = False

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._names = itertools.count(1)
        self._pool: asyncpg.Pool | None = None
        self._owned = ""
        self._dropping: list[Future[None]] = []
        self.url = ""
        self.skip_reason = ""
        try:
            self._run(self._open())
        except (OSError, asyncpg.PostgresError, subprocess.SubprocessError) as exc:
            self.skip_reason = (
                "no PostgreSQL: set SMSGW_TEST_DATABASE_URL or run a server on "
                f"127.0.0.1:5432 ({type(exc).__name__}: {exc})"
            )

    def _run(self, work: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(work, self._loop).result(timeout=60)

    async def _open(self) -> None:
        given = os.environ.get("SMSGW_TEST_DATABASE_URL", "")
        if given:
            self.url = given
        else:
            admin = await _connect_local(_cluster_versions())
            try:
                self._owned = f"smsgw_test_{os.getpid()}"
                await admin.execute(f'DROP DATABASE IF EXISTS "{self._owned}"')
                await admin.execute(f'CREATE DATABASE "{self._owned}"')
            finally:
                await admin.close()
            self.url = LOCAL_SERVER.rsplit("/", 1)[0] + f"/{self._owned}"
        self._pool = await asyncpg.create_pool(self.url, min_size=1, max_size=4)

    def new_schema(self) -> tuple[str, str]:
        """A new empty schema and the DATABASE_URL that stores into it."""
        name = f"t{os.getpid()}_{next(self._names)}"
        self._run(self._execute(f'CREATE SCHEMA "{name}"'))
        separator = "&" if "?" in self.url else "?"
        return name, f"{self.url}{separator}search_path={name}"

    def drop_schema(self, name: str) -> None:
        """Dropped in the background: the next test need not wait for it."""
        self._dropping.append(
            asyncio.run_coroutine_threadsafe(
                self._execute(f'DROP SCHEMA "{name}" CASCADE'), self._loop
            )
        )

    async def _execute(self, sql: str) -> None:
        assert self._pool is not None
        await self._pool.execute(sql)

    def close(self) -> None:
        for dropping in self._dropping:
            with contextlib.suppress(Exception):
                dropping.result(timeout=60)
        with contextlib.suppress(Exception):
            self._run(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    async def _close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
        if self._owned:
            admin = await asyncpg.connect(LOCAL_SERVER)
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{self._owned}" WITH (FORCE)')
            finally:
                await admin.close()


def _cluster_versions() -> list[str]:
    """The local clusters pg_ctlcluster can start; none without it."""
    if not (shutil.which("pg_ctlcluster") and _CLUSTERS.is_dir()):
        return []
    return sorted(p.name for p in _CLUSTERS.iterdir())


async def _connect_local(versions: list[str]) -> asyncpg.Connection:
    try:
        return await asyncpg.connect(LOCAL_SERVER, timeout=5)
    except OSError:
        if not versions:
            raise
    for version in versions:
        await asyncio.to_thread(
            subprocess.run,
            ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"],
            capture_output=True,
            timeout=60,
            check=False,
        )
    for _ in range(50):
        with contextlib.suppress(OSError):
            return await asyncpg.connect(LOCAL_SERVER, timeout=5)
        await asyncio.sleep(0.2)
    return await asyncpg.connect(LOCAL_SERVER, timeout=5)


# -- reaching into a running gateway's store, whichever it is ----------------------


async def db_rows(settings: Settings, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Run one statement (`?` placeholders) straight on the store's database and
    commit it; returns its rows."""
    if settings.database_url:
        conn = await asyncpg.connect(settings.database_url)
        try:
            return [tuple(r) for r in await conn.fetch(dollar_params(sql), *params)]
        finally:
            await conn.close()

    def run() -> list[tuple[Any, ...]]:
        with contextlib.closing(sqlite3.connect(settings.sqlite_path)) as db:
            rows = db.execute(sql, params).fetchall()
            db.commit()
            return rows

    return await asyncio.to_thread(run)


async def db_count(settings: Settings, sql: str, *params: Any) -> int:
    [(count,)] = await db_rows(settings, sql, *params)
    return int(count)


async def db_dump(settings: Settings) -> str:
    """Every stored value as text, one row a line."""
    if not settings.database_url:

        def dump() -> str:
            with contextlib.closing(sqlite3.connect(settings.sqlite_path)) as db:
                return "\n".join(db.iterdump())

        return await asyncio.to_thread(dump)
    tables = await db_rows(
        settings,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()",
    )
    lines: list[str] = []
    for (table,) in tables:
        lines += [row[0] for row in await db_rows(settings, f'SELECT t::text FROM "{table}" t')]  # noqa: S608
    return "\n".join(lines)


@contextlib.asynccontextmanager
async def writes_blocked(settings: Settings) -> AsyncIterator[None]:
    """Another process holding a lock that the store's report writes wait for."""
    if settings.database_url:
        conn = await asyncpg.connect(settings.database_url)
        try:
            async with conn.transaction():
                await conn.execute("LOCK TABLE callback_inbox, reports IN EXCLUSIVE MODE")
                yield
        finally:
            await conn.close()
        return
    blocker = sqlite3.connect(settings.sqlite_path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
