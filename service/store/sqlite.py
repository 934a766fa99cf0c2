"""The SQLite Store: aiosqlite, WAL, versioned migrations, group commit.

All writes go through one connection and one writer task. The writer takes every
job waiting in its queue, runs each inside its own savepoint, and commits them with
a single COMMIT (one fsync): under load many callbacks share the cost of durability,
and each caller is answered only after the commit that holds its work. Reads use a
second connection, which WAL lets run beside the writer.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from service import reconcile
from service.clock import iso_now
from service.errors import Conflict, Unavailable
from service.model import Account, InboundSms, Report, Status
from service.reconcile import Counters
from service.store.protocol import (
    AttemptResult,
    Decision,
    Event,
    EventSink,
    InboundRecord,
    MessageFilter,
    MessageRecord,
    NewMessage,
    PollDue,
    ReportOutcome,
    Stats,
)

T = TypeVar("T")

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE accounts (
        name TEXT PRIMARY KEY,
        provider TEXT NOT NULL,
        credentials TEXT NOT NULL,
        sender TEXT NOT NULL DEFAULT '',
        fallback_sender TEXT NOT NULL DEFAULT '',
        active INTEGER NOT NULL DEFAULT 1,
        pattern TEXT NOT NULL DEFAULT 'batch',
        priority INTEGER NOT NULL DEFAULT 100,
        base_url TEXT NOT NULL DEFAULT '',
        options TEXT NOT NULL DEFAULT '{}',
        callback_secret TEXT NOT NULL,
        description TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE messages (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        account TEXT NOT NULL,
        recipient TEXT NOT NULL,
        sender TEXT NOT NULL,
        text TEXT NOT NULL,
        encoding TEXT NOT NULL,
        segments INTEGER NOT NULL,
        status TEXT NOT NULL,
        client_ref TEXT NOT NULL DEFAULT '',
        request_id TEXT NOT NULL DEFAULT '',
        error_code TEXT NOT NULL DEFAULT '',
        error_text TEXT NOT NULL DEFAULT '',
        http_status INTEGER,
        http_response TEXT NOT NULL DEFAULT '',
        attempts INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX messages_account ON messages(account, seq);
    CREATE INDEX messages_status ON messages(status, seq);
    CREATE INDEX messages_recipient ON messages(recipient, seq);
    CREATE TABLE message_parts (
        message_id TEXT NOT NULL,
        part INTEGER NOT NULL,
        account TEXT NOT NULL,
        request_id TEXT NOT NULL,
        rid_key TEXT NOT NULL,
        rcpt_key TEXT NOT NULL,
        status TEXT NOT NULL,
        PRIMARY KEY (message_id, part)
    );
    CREATE INDEX parts_match ON message_parts(account, rid_key, rcpt_key);
    CREATE TABLE reports (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        account TEXT NOT NULL,
        rid_key TEXT NOT NULL,
        rcpt_key TEXT NOT NULL,
        status TEXT NOT NULL,
        request_id TEXT NOT NULL,
        recipient TEXT NOT NULL,
        error_code TEXT NOT NULL,
        error_text TEXT NOT NULL,
        received_at TEXT NOT NULL,
        message_id TEXT
    );
    CREATE UNIQUE INDEX reports_once ON reports(account, rid_key, rcpt_key, status);
    CREATE INDEX reports_parked ON reports(account, rid_key, rcpt_key) WHERE message_id IS NULL;
    CREATE INDEX reports_unmatched_age ON reports(received_at) WHERE message_id IS NULL;
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ts TEXT NOT NULL,
        event TEXT NOT NULL,
        message_id TEXT NOT NULL DEFAULT '',
        account TEXT NOT NULL DEFAULT '',
        data TEXT NOT NULL
    );
    CREATE INDEX events_message ON events(message_id, id);
    CREATE TABLE inbound (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        account TEXT NOT NULL,
        provider_id TEXT NOT NULL,
        sender TEXT NOT NULL,
        recipient TEXT NOT NULL,
        text TEXT NOT NULL,
        received_at TEXT NOT NULL
    );
    CREATE UNIQUE INDEX inbound_once ON inbound(account, provider_id) WHERE provider_id != '';
    CREATE TABLE counters (
        account TEXT PRIMARY KEY,
        requests INTEGER NOT NULL DEFAULT 0,
        accepted INTEGER NOT NULL DEFAULT 0,
        failed INTEGER NOT NULL DEFAULT 0,
        delivered INTEGER NOT NULL DEFAULT 0,
        undelivered INTEGER NOT NULL DEFAULT 0,
        pending INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE outbox (
        message_id TEXT PRIMARY KEY,
        due_at REAL NOT NULL,
        claimed_until REAL
    );
    CREATE INDEX outbox_due ON outbox(due_at) WHERE claimed_until IS NULL;
    CREATE TABLE idempotency (
        key TEXT PRIMARY KEY,
        body_hash TEXT NOT NULL,
        response TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    """,
    # 2: failover and fallback-sender bookkeeping, account links, the poll schedule.
    """
    ALTER TABLE messages ADD COLUMN tried TEXT NOT NULL DEFAULT '';
    ALTER TABLE messages ADD COLUMN routed INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE accounts ADD COLUMN logo_url TEXT NOT NULL DEFAULT '';
    ALTER TABLE accounts ADD COLUMN signup_url TEXT NOT NULL DEFAULT '';
    CREATE TABLE polls (
        message_id TEXT PRIMARY KEY,
        due_at REAL NOT NULL,
        tries INTEGER NOT NULL,
        since REAL NOT NULL
    );
    CREATE INDEX polls_due ON polls(due_at);
    """,
    # 3: delivery latency, auto-replies and opt-outs, outbound event webhooks.
    """
    ALTER TABLE messages ADD COLUMN submitted_at REAL;
    ALTER TABLE messages ADD COLUMN inbound_id INTEGER;
    CREATE INDEX messages_replies ON messages(recipient, created_at) WHERE inbound_id IS NOT NULL;
    ALTER TABLE inbound ADD COLUMN rule_id INTEGER;
    ALTER TABLE inbound ADD COLUMN reply_message_id TEXT NOT NULL DEFAULT '';
    ALTER TABLE inbound ADD COLUMN reply_note TEXT NOT NULL DEFAULT '';
    CREATE TABLE autoreplies (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        position INTEGER NOT NULL,
        kind TEXT NOT NULL,
        pattern TEXT NOT NULL DEFAULT '',
        reply TEXT NOT NULL,
        account TEXT NOT NULL DEFAULT '',
        number TEXT NOT NULL DEFAULT '',
        active INTEGER NOT NULL DEFAULT 1,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE suppressions (
        number TEXT PRIMARY KEY,
        keyword TEXT NOT NULL,
        account TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE TABLE webhooks (
        id TEXT PRIMARY KEY,
        url TEXT NOT NULL,
        secret TEXT NOT NULL,
        events TEXT NOT NULL,
        description TEXT NOT NULL DEFAULT '',
        active INTEGER NOT NULL DEFAULT 1,
        cursor INTEGER NOT NULL,
        last_status INTEGER,
        last_error TEXT NOT NULL DEFAULT '',
        last_attempt_at TEXT NOT NULL DEFAULT '',
        failures INTEGER NOT NULL DEFAULT 0,
        delivered INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL
    );
    CREATE TABLE webhook_deliveries (
        webhook_id TEXT NOT NULL,
        event_id INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        due_at REAL NOT NULL,
        first_at REAL NOT NULL,
        claimed_until REAL,
        PRIMARY KEY (webhook_id, event_id)
    );
    CREATE INDEX webhook_deliveries_due ON webhook_deliveries(due_at);
    """,
)

_MESSAGE_COLUMNS = (
    "id, seq, account, recipient, sender, text, encoding, segments, status, client_ref, "
    "request_id, error_code, error_text, http_status, http_response, attempts, "
    "created_at, updated_at, tried, routed"
)
_ACCOUNT_COLUMNS = (
    "name, provider, credentials, sender, fallback_sender, active, pattern, priority, "
    "base_url, options, callback_secret, description, logo_url, signup_url"
)
_COUNTER_SET = ", ".join(f"{n} = {n} + excluded.{n}" for n in reconcile.COUNTER_NAMES)
_COUNTER_UPSERT = (
    f"INSERT INTO counters (account, {', '.join(reconcile.COUNTER_NAMES)}) "
    f"VALUES (?, {', '.join('?' for _ in reconcile.COUNTER_NAMES)}) "
    f"ON CONFLICT(account) DO UPDATE SET {_COUNTER_SET}"
)


@dataclass(slots=True)
class _Tx:
    """One job's view of the open transaction, collecting the events it writes."""

    db: aiosqlite.Connection
    events: list[Event] = field(default_factory=list)

    async def event(self, name: str, message_id: str = "", account: str = "", **data: Any) -> None:
        ts = iso_now()
        cursor = await self.db.execute(
            "INSERT INTO events (ts, event, message_id, account, data) VALUES (?, ?, ?, ?, ?)",
            (ts, name, message_id, account, json.dumps(data, separators=(",", ":"))),
        )
        self.events.append(Event(name, ts, message_id, account, data, cursor.lastrowid or 0))

    async def add_counters(self, account: str, delta: Counters) -> None:
        if not delta.is_zero():
            await self.db.execute(_COUNTER_UPSERT, (account, *delta.as_tuple()))


@dataclass(slots=True)
class _Job:
    work: Callable[[_Tx], Awaitable[Any]]
    future: asyncio.Future[Any]


def _message(row: Sequence[Any]) -> MessageRecord:
    return MessageRecord(
        id=row[0],
        seq=row[1],
        account=row[2],
        to=row[3],
        sender=row[4],
        text=row[5],
        encoding=row[6],
        segments=row[7],
        status=Status(row[8]),
        client_ref=row[9],
        request_id=row[10],
        error_code=row[11],
        error_text=row[12],
        http_status=row[13],
        http_response=row[14],
        attempts=row[15],
        created_at=row[16],
        updated_at=row[17],
        tried=tuple(filter(None, row[18].split(","))),
        routed=bool(row[19]),
    )


def _event(row: Sequence[Any]) -> Event:
    return Event(row[2], row[1], row[3], row[4], json.loads(row[5]), row[0])


def _account(row: Sequence[Any]) -> Account:
    return Account(
        name=row[0],
        provider=row[1],
        credentials=json.loads(row[2]),
        sender=row[3],
        fallback_sender=row[4],
        active=bool(row[5]),
        pattern=row[6],
        priority=row[7],
        base_url=row[8],
        options=json.loads(row[9]),
        callback_secret=row[10],
        description=row[11],
        logo_url=row[12],
        signup_url=row[13],
    )


def _account_values(account: Account) -> tuple[Any, ...]:
    return (
        account.name,
        account.provider,
        json.dumps(dict(account.credentials)),
        account.sender,
        account.fallback_sender,
        int(account.active),
        account.pattern,
        account.priority,
        account.base_url,
        json.dumps(dict(account.options)),
        account.callback_secret,
        account.description,
        account.logo_url,
        account.signup_url,
    )


class SqliteStore:
    def __init__(
        self, path: Path, on_events: EventSink | None = None, *, busy_timeout: float = 10.0
    ) -> None:
        self._path = path
        self._busy_ms = int(busy_timeout * 1000)
        self._on_events = on_events or (lambda events: None)
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._writer_task: asyncio.Task[None] | None = None
        self._write_db: aiosqlite.Connection | None = None
        self._read_db: aiosqlite.Connection | None = None

    async def open(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._write_db = await self._connect()
        await self._migrate(self._write_db)
        self._read_db = await self._connect()
        self._writer_task = asyncio.create_task(self._write_loop(), name="sqlite-writer")

    async def _connect(self) -> aiosqlite.Connection:
        db = await aiosqlite.connect(self._path, isolation_level=None)
        # FULL: a callback is acknowledged only after its commit reached the disk.
        for pragma in ("journal_mode=WAL", "synchronous=FULL", f"busy_timeout={self._busy_ms}"):
            await db.execute(f"PRAGMA {pragma}")
        return db

    async def _migrate(self, db: aiosqlite.Connection) -> None:
        await db.execute("BEGIN IMMEDIATE")
        try:
            await db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER)")
            async with db.execute("SELECT MAX(version) FROM schema_version") as cursor:
                row = await cursor.fetchone()
            current = (row[0] if row else None) or 0
            for version, script in enumerate(MIGRATIONS, start=1):
                if version > current:
                    for statement in filter(str.strip, script.split(";")):
                        await db.execute(statement)
                    await db.execute("INSERT INTO schema_version VALUES (?)", (version,))
            await db.execute("COMMIT")
        except BaseException:
            await db.execute("ROLLBACK")
            raise

    async def close(self) -> None:
        if self._writer_task is not None:
            self._writer_task.cancel()
            await asyncio.gather(self._writer_task, return_exceptions=True)
        for db in (self._write_db, self._read_db):
            if db is not None:
                await db.close()

    async def ping(self) -> bool:
        try:
            await self._fetchall("SELECT 1")
        except (sqlite3.Error, ValueError):
            return False
        return self._writer_task is not None and not self._writer_task.done()

    # -- plumbing --------------------------------------------------------------

    async def _write(self, work: Callable[[_Tx], Awaitable[T]]) -> T:
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

    async def _commit_group(self, db: aiosqlite.Connection, jobs: list[_Job]) -> None:
        outcomes: list[tuple[bool, Any]] = []
        events: list[Event] = []
        try:
            await db.execute("BEGIN IMMEDIATE")
            for job in jobs:
                tx = _Tx(db)
                await db.execute("SAVEPOINT job")
                try:
                    result = await job.work(tx)
                except Exception as exc:
                    await db.execute("ROLLBACK TO job")
                    await db.execute("RELEASE job")
                    outcomes.append((False, exc))
                    continue
                await db.execute("RELEASE job")
                outcomes.append((True, result))
                events.extend(tx.events)
            await db.execute("COMMIT")
        except sqlite3.Error as exc:
            if db.in_transaction:
                await db.execute("ROLLBACK")
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
        if events:
            self._on_events(events)

    async def _fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        assert self._read_db is not None
        async with self._read_db.execute(sql, tuple(params)) as cursor:
            return list(await cursor.fetchall())

    # -- accounts --------------------------------------------------------------

    async def create_account(self, account: Account) -> None:
        async def work(tx: _Tx) -> None:
            now = iso_now()
            try:
                await tx.db.execute(
                    f"INSERT INTO accounts ({_ACCOUNT_COLUMNS}, created_at, updated_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (*_account_values(account), now, now),
                )
            except sqlite3.IntegrityError as exc:
                raise Conflict(f"account {account.name!r} exists", field="name") from exc
            await tx.event("account.created", account=account.name, provider=account.provider)

        await self._write(work)

    async def get_account(self, name: str) -> Account | None:
        rows = await self._fetchall(
            f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE name = ?", (name,)
        )
        return _account(rows[0]) if rows else None

    async def list_accounts(self) -> list[Account]:
        rows = await self._fetchall(
            f"SELECT {_ACCOUNT_COLUMNS} FROM accounts ORDER BY priority, name"
        )
        return [_account(row) for row in rows]

    async def update_account(self, account: Account) -> None:
        async def work(tx: _Tx) -> None:
            values = _account_values(account)
            await tx.db.execute(
                "UPDATE accounts SET provider = ?, credentials = ?, sender = ?, "
                "fallback_sender = ?, active = ?, pattern = ?, priority = ?, base_url = ?, "
                "options = ?, callback_secret = ?, description = ?, logo_url = ?, "
                "signup_url = ?, updated_at = ? "
                "WHERE name = ?",
                (*values[1:], iso_now(), account.name),
            )
            await tx.event("account.updated", account=account.name)

        await self._write(work)

    async def delete_account(self, name: str) -> bool:
        async def work(tx: _Tx) -> bool:
            cursor = await tx.db.execute("DELETE FROM accounts WHERE name = ?", (name,))
            if cursor.rowcount:
                await tx.event("account.deleted", account=name)
            return cursor.rowcount > 0

        return await self._write(work)

    # -- messages --------------------------------------------------------------

    async def enqueue(
        self,
        messages: Sequence[NewMessage],
        response: Mapping[str, Any],
        idempotency: tuple[str, str] | None = None,
    ) -> Mapping[str, Any]:
        async def work(tx: _Tx) -> Mapping[str, Any]:
            if idempotency is not None:
                key, body_hash = idempotency
                async with tx.db.execute(
                    "SELECT body_hash, response FROM idempotency WHERE key = ?", (key,)
                ) as cursor:
                    seen = await cursor.fetchone()
                if seen is not None:
                    if seen[0] != body_hash:
                        raise Conflict(
                            "Idempotency-Key was used with a different body",
                            field="Idempotency-Key",
                            code="idempotency_conflict",
                        )
                    stored: Mapping[str, Any] = json.loads(seen[1])
                    return stored
                await tx.db.execute(
                    "INSERT INTO idempotency (key, body_hash, response, created_at) "
                    "VALUES (?, ?, ?, ?)",
                    (key, body_hash, json.dumps(response), iso_now()),
                )
            now = iso_now()
            await tx.db.executemany(
                "INSERT INTO messages (id, account, recipient, sender, text, encoding, segments, "
                "status, client_ref, routed, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?)",
                [
                    (
                        m.id,
                        m.account,
                        m.to,
                        m.sender,
                        m.text,
                        m.encoding,
                        m.segments,
                        m.client_ref,
                        int(m.routed),
                        now,
                        now,
                    )
                    for m in messages
                ],
            )
            await tx.db.executemany(
                "INSERT INTO outbox (message_id, due_at) VALUES (?, 0)",
                [(m.id,) for m in messages],
            )
            for m in messages:
                await tx.event(
                    "message.queued",
                    m.id,
                    m.account,
                    status=Status.QUEUED.value,
                    to=m.to,
                    encoding=m.encoding,
                    segments=m.segments,
                )
            return response

        return await self._write(work)

    async def get_message(self, message_id: str) -> MessageRecord | None:
        rows = await self._fetchall(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE id = ?", (message_id,)
        )
        return _message(rows[0]) if rows else None

    async def message_events(self, message_id: str) -> list[Event]:
        rows = await self._fetchall(
            "SELECT id, ts, event, message_id, account, data FROM events "
            "WHERE message_id = ? ORDER BY id",
            (message_id,),
        )
        return [_event(row) for row in rows]

    async def events_after(self, after: int, limit: int) -> list[Event]:
        rows = await self._fetchall(
            "SELECT id, ts, event, message_id, account, data FROM events "
            "WHERE id > ? ORDER BY id LIMIT ?",
            (after, limit),
        )
        return [_event(row) for row in rows]

    async def list_messages(
        self, filters: MessageFilter, limit: int, before_seq: int | None
    ) -> list[MessageRecord]:
        where: list[str] = []
        params: list[Any] = []
        for column, value in (
            ("status", filters.status),
            ("account", filters.account),
            ("recipient", filters.to),
        ):
            if value:
                where.append(f"{column} = ?")
                params.append(value)
        if before_seq is not None:
            where.append("seq < ?")
            params.append(before_seq)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = await self._fetchall(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages {clause} ORDER BY seq DESC LIMIT ?",
            (*params, limit),
        )
        return [_message(row) for row in rows]

    # -- outbox ----------------------------------------------------------------

    async def due_messages(self, now: float, limit: int) -> list[MessageRecord]:
        columns = ", ".join(f"m.{c.strip()}" for c in _MESSAGE_COLUMNS.split(","))
        rows = await self._fetchall(
            f"SELECT {columns} FROM outbox o JOIN messages m ON m.id = o.message_id "
            "WHERE o.claimed_until IS NULL AND o.due_at <= ? ORDER BY o.due_at, m.seq LIMIT ?",
            (now, limit),
        )
        return [_message(row) for row in rows]

    async def claim(self, message_ids: Sequence[str], now: float, lease: float) -> list[str]:
        async def work(tx: _Tx) -> list[str]:
            won = []
            for message_id in message_ids:
                cursor = await tx.db.execute(
                    "UPDATE outbox SET claimed_until = ? "
                    "WHERE message_id = ? AND claimed_until IS NULL",
                    (now + lease, message_id),
                )
                if not cursor.rowcount:
                    continue
                won.append(message_id)
                cursor = await tx.db.execute(
                    "UPDATE messages SET status = 'sending', attempts = attempts + 1, "
                    "updated_at = ? WHERE id = ? AND status = 'queued' RETURNING account",
                    (iso_now(), message_id),
                )
                row = await cursor.fetchone()
                if row is not None:
                    await tx.event(
                        "message.sending", message_id, row[0], status=Status.SENDING.value
                    )
                else:
                    await tx.db.execute(
                        "UPDATE messages SET attempts = attempts + 1 WHERE id = ?",
                        (message_id,),
                    )
            return won

        return await self._write(work)

    async def expire_claims(self, now: float) -> int:
        async def work(tx: _Tx) -> int:
            async with tx.db.execute(
                "SELECT message_id FROM outbox WHERE claimed_until < ?", (now,)
            ) as cursor:
                expired = [row[0] for row in await cursor.fetchall()]
            for message_id in expired:
                interrupted = AttemptResult(
                    message_id,
                    Decision.UNKNOWN,
                    error_code="outcome_unknown",
                    error_text="the send was interrupted; not resent to avoid a duplicate",
                )
                await self._conclude(tx, interrupted)
            return len(expired)

        return await self._write(work)

    async def record_attempts(self, results: Sequence[AttemptResult]) -> None:
        async def work(tx: _Tx) -> None:
            for result in results:
                await self._conclude(tx, result)

        await self._write(work)

    async def _load(self, tx: _Tx, message_id: str) -> tuple[str, Status] | None:
        async with tx.db.execute(
            "SELECT account, status FROM messages WHERE id = ?", (message_id,)
        ) as cursor:
            row = await cursor.fetchone()
        return (row[0], Status(row[1])) if row else None

    async def _set_status(
        self, tx: _Tx, message_id: str, account: str, old: Status, new: Status, **data: Any
    ) -> None:
        """Move a message to `new` with its counter delta and its event."""
        async with tx.db.execute(
            "UPDATE messages SET status = ?, updated_at = ? WHERE id = ? RETURNING submitted_at",
            (new.value, iso_now(), message_id),
        ) as cursor:
            row = await cursor.fetchone()
        if reconcile.is_final(new):
            await tx.db.execute("DELETE FROM polls WHERE message_id = ?", (message_id,))
            submitted_at = row[0] if row else None
            if submitted_at is not None:
                data["latency_ms"] = max(0, round((time.time() - submitted_at) * 1000))
        await tx.add_counters(account, reconcile.counter_delta(old, new))
        await tx.event(
            f"message.{new.value}",
            message_id,
            account,
            status=new.value,
            previous=old.value,
            **data,
        )

    async def _conclude(self, tx: _Tx, result: AttemptResult) -> None:
        """Record one attempt's result; every decision stores the provider's answer."""
        loaded = await self._load(tx, result.message_id)
        if loaded is None:
            return
        account, old = loaded
        await tx.db.execute(
            "UPDATE messages SET http_status = ?, http_response = ?, error_code = ?, "
            "error_text = ? WHERE id = ?",
            (
                result.http_status,
                result.http_response,
                result.error_code,
                result.error_text,
                result.message_id,
            ),
        )
        if result.decision is Decision.RETRY:
            await self._reschedule(tx, account, result)
            return
        await tx.db.execute("DELETE FROM outbox WHERE message_id = ?", (result.message_id,))
        if result.decision is Decision.UNKNOWN:
            await tx.event(
                "message.outcome_unknown",
                result.message_id,
                account,
                error_code=result.error_code,
                error_text=result.error_text,
            )
            return
        await self._conclude_answered(tx, account, old, result)

    async def _reschedule(self, tx: _Tx, account: str, result: AttemptResult) -> None:
        await tx.db.execute(
            "UPDATE outbox SET due_at = ?, claimed_until = NULL WHERE message_id = ?",
            (result.retry_at, result.message_id),
        )
        details = {
            "error_code": result.error_code,
            "error_text": result.error_text,
            "http_status": result.http_status,
        }
        if result.new_account:
            # A new account starts its own count of attempts; the old one is remembered
            # so that failover never comes back to it.
            await tx.db.execute(
                "UPDATE messages SET account = ?, attempts = 0, tried = tried || ? WHERE id = ?",
                (result.new_account, f"{account},", result.message_id),
            )
            await tx.event(
                "message.failover",
                result.message_id,
                result.new_account,
                previous_account=account,
                **details,
            )
        elif result.new_sender:
            await tx.db.execute(
                "UPDATE messages SET sender = ? WHERE id = ?",
                (result.new_sender, result.message_id),
            )
            await tx.event(
                "message.fallback_sender",
                result.message_id,
                account,
                sender_id=result.new_sender,
                **details,
            )
        else:
            await tx.event(
                "message.retry", result.message_id, account, retry_at=result.retry_at, **details
            )

    async def _conclude_answered(
        self, tx: _Tx, account: str, old: Status, result: AttemptResult
    ) -> None:
        """An accepted or refused message. Any request IDs the provider gave are kept,
        refused ones too, so that reports it sends for them later match and change
        nothing rather than wait as unmatched."""
        reached = result.status if result.decision is Decision.ACCEPTED else Status.FAILED
        request_id = ",".join(result.request_ids)
        await tx.db.execute(
            "UPDATE messages SET request_id = ?, submitted_at = COALESCE(submitted_at, ?) "
            "WHERE id = ?",
            (
                request_id,
                time.time() if result.decision is Decision.ACCEPTED else None,
                result.message_id,
            ),
        )
        await tx.db.executemany(
            "INSERT INTO message_parts (message_id, part, account, request_id, rid_key, "
            "rcpt_key, status) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (result.message_id, part, account, rid, key[0], key[1], reached.value)
                for part, (rid, key) in enumerate(zip(result.request_ids, result.keys, strict=True))
            ],
        )
        if result.poll_at is not None:
            await tx.db.execute(
                "INSERT INTO polls (message_id, due_at, tries, since) VALUES (?, ?, 0, ?)",
                (result.message_id, result.poll_at, result.poll_at),
            )
        new = reconcile.advance(old, reached)
        if new is not old:
            await self._set_status(
                tx,
                result.message_id,
                account,
                old,
                new,
                request_id=request_id,
                error_code=result.error_code,
                error_text=result.error_text,
                http_status=result.http_status,
            )
        for rid_key, rcpt_key in set(result.keys):
            async with tx.db.execute(
                "SELECT id, status, request_id, recipient, error_code, error_text FROM reports "
                "WHERE account = ? AND rid_key = ? AND rcpt_key = ? AND message_id IS NULL "
                "ORDER BY id",
                (account, rid_key, rcpt_key),
            ) as cursor:
                parked = await cursor.fetchall()
            for row in parked:
                report = Report(row[2], Status(row[1]), row[3], row[4], row[5])
                await self._apply_to_parts(
                    tx, account, report, (rid_key, rcpt_key), row[0], parked=True
                )

    # -- polling ---------------------------------------------------------------

    async def due_polls(self, now: float, limit: int) -> list[PollDue]:
        rows = await self._fetchall(
            "SELECT p.message_id, m.account, m.request_id, p.tries, p.since "
            "FROM polls p JOIN messages m ON m.id = p.message_id "
            "WHERE p.due_at <= ? ORDER BY p.due_at LIMIT ?",
            (now, limit),
        )
        return [
            PollDue(row[0], row[1], tuple(filter(None, row[2].split(","))), row[3], row[4])
            for row in rows
        ]

    async def reschedule_poll(self, message_id: str, due_at: float | None) -> None:
        async def work(tx: _Tx) -> None:
            if due_at is None:
                cursor = await tx.db.execute(
                    "DELETE FROM polls WHERE message_id = ? RETURNING message_id",
                    (message_id,),
                )
                if await cursor.fetchone() is not None:
                    loaded = await self._load(tx, message_id)
                    await tx.event("message.poll_gave_up", message_id, loaded[0] if loaded else "")
                return
            await tx.db.execute(
                "UPDATE polls SET due_at = ?, tries = tries + 1 WHERE message_id = ?",
                (due_at, message_id),
            )

        await self._write(work)

    # -- reports ---------------------------------------------------------------

    async def apply_report(
        self, account: str, report: Report, key: tuple[str, str]
    ) -> ReportOutcome:
        async def work(tx: _Tx) -> ReportOutcome:
            cursor = await tx.db.execute(
                "INSERT INTO reports (account, rid_key, rcpt_key, status, request_id, "
                "recipient, error_code, error_text, received_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (
                    account,
                    *key,
                    report.status.value,
                    report.request_id,
                    report.recipient,
                    report.error_code,
                    report.error_text,
                    iso_now(),
                ),
            )
            details = {
                "request_id": report.request_id,
                "status": report.status.value,
                "error_code": report.error_code,
            }
            if not cursor.rowcount:
                message_id = await self._matching_message(tx, account, key)
                await tx.event("dlr.duplicate", message_id, account, **details)
                return ReportOutcome.DUPLICATE
            report_id = cursor.lastrowid or 0
            if await self._apply_to_parts(tx, account, report, key, report_id, parked=False):
                return ReportOutcome.MATCHED
            await tx.event("dlr.unmatched", "", account, **details)
            return ReportOutcome.UNMATCHED

        return await self._write(work)

    async def _matching_message(self, tx: _Tx, account: str, key: tuple[str, str]) -> str:
        async with tx.db.execute(
            "SELECT message_id FROM message_parts WHERE account = ? AND rid_key = ? "
            "AND rcpt_key = ? LIMIT 1",
            (account, *key),
        ) as cursor:
            row = await cursor.fetchone()
        return str(row[0]) if row else ""

    async def _apply_to_parts(
        self,
        tx: _Tx,
        account: str,
        report: Report,
        key: tuple[str, str],
        report_id: int,
        *,
        parked: bool,
    ) -> bool:
        """Apply a report to every part it matches; False when it matches none."""
        async with tx.db.execute(
            "SELECT message_id, part, status FROM message_parts "
            "WHERE account = ? AND rid_key = ? AND rcpt_key = ?",
            (account, *key),
        ) as cursor:
            matches = list(await cursor.fetchall())
        for message_id, part, part_status in matches:
            new_part = reconcile.advance(Status(part_status), report.status)
            if new_part.value != part_status:
                await tx.db.execute(
                    "UPDATE message_parts SET status = ? WHERE message_id = ? AND part = ?",
                    (new_part.value, message_id, part),
                )
            async with tx.db.execute(
                "SELECT part, status FROM message_parts WHERE message_id = ? ORDER BY part",
                (message_id,),
            ) as cursor:
                parts = {row[0]: Status(row[1]) for row in await cursor.fetchall()}
            ordered = [parts[p] for p in sorted(parts)]
            combined = reconcile.combine_parts(ordered, sorted(parts).index(part))
            loaded = await self._load(tx, message_id)
            assert loaded is not None
            old = loaded[1]
            new = reconcile.advance(old, combined)
            await tx.event(
                "dlr.matched",
                message_id,
                account,
                request_id=report.request_id,
                status=report.status.value,
                error_code=report.error_code,
                error_text=report.error_text,
                applied=new is not old,
                parked=parked,
            )
            if new is not old:
                if new in reconcile.FAILURES:
                    await tx.db.execute(
                        "UPDATE messages SET error_code = ?, error_text = ? WHERE id = ?",
                        (report.error_code, report.error_text, message_id),
                    )
                await self._set_status(
                    tx,
                    message_id,
                    account,
                    old,
                    new,
                    request_id=report.request_id,
                    error_code=report.error_code,
                )
        if matches:
            await tx.db.execute(
                "UPDATE reports SET message_id = ? WHERE id = ?", (matches[0][0], report_id)
            )
        return bool(matches)

    # -- inbound ---------------------------------------------------------------

    async def add_inbound(self, account: str, inbound: InboundSms) -> bool:
        async def work(tx: _Tx) -> bool:
            cursor = await tx.db.execute(
                "INSERT INTO inbound (account, provider_id, sender, recipient, text, "
                "received_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (
                    account,
                    inbound.provider_id,
                    inbound.sender,
                    inbound.recipient,
                    inbound.text,
                    iso_now(),
                ),
            )
            fresh = cursor.rowcount > 0
            await tx.event(
                "inbound.received" if fresh else "inbound.duplicate",
                "",
                account,
                provider_id=inbound.provider_id,
                sender=inbound.sender,
                recipient=inbound.recipient,
            )
            return fresh

        return await self._write(work)

    async def list_inbound(self, limit: int, before_id: int | None) -> list[InboundRecord]:
        clause = "WHERE id < ?" if before_id is not None else ""
        params = (before_id, limit) if before_id is not None else (limit,)
        rows = await self._fetchall(
            "SELECT id, account, sender, recipient, text, provider_id, received_at FROM inbound "
            f"{clause} ORDER BY id DESC LIMIT ?",
            params,
        )
        return [InboundRecord(*row) for row in rows]

    # -- counters --------------------------------------------------------------

    async def stats(self, unmatched_before: str) -> Stats:
        rows = await self._fetchall(
            f"SELECT account, {', '.join(reconcile.COUNTER_NAMES)} FROM counters"
        )
        accounts = {row[0]: Counters(*row[1:]) for row in rows}
        unmatched_rows = await self._fetchall(
            "SELECT account, COUNT(*) FROM reports WHERE message_id IS NULL "
            "AND received_at < ? GROUP BY account",
            (unmatched_before,),
        )
        total = sum(accounts.values(), Counters())
        return Stats(total, accounts, {row[0]: row[1] for row in unmatched_rows})

    async def derive_counters(self) -> dict[str, Counters]:
        rows = await self._fetchall(
            "SELECT account, status, COUNT(*) FROM messages GROUP BY account, status"
        )
        by_account: dict[str, list[tuple[Status, int]]] = {}
        for account, status, count in rows:
            by_account.setdefault(account, []).append((Status(status), count))
        return {name: reconcile.derive_counters(pairs) for name, pairs in by_account.items()}
