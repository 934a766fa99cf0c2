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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from service import reconcile
from service.clock import iso_now
from service.errors import Conflict, Unavailable
from service.model import OPTED_OUT, OPTED_OUT_TEXT, Account, InboundSms, Report, Status
from service.reconcile import Counters
from service.store.protocol import (
    AttemptResult,
    AutoReplyRule,
    Decision,
    Event,
    EventSink,
    Gauges,
    InboundDecision,
    InboundFacts,
    InboundPlanner,
    InboundRecord,
    InboundResult,
    MessageFilter,
    MessageRecord,
    NewMessage,
    NewWebhook,
    PollDue,
    ReportOutcome,
    Stats,
    Suppression,
    Webhook,
    WebhookAttempt,
    WebhookDelivery,
    WebhookOutcome,
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
    CREATE INDEX messages_replies_to ON messages(recipient, created_at)
        WHERE inbound_id IS NOT NULL;
    CREATE INDEX messages_replies_at ON messages(created_at) WHERE inbound_id IS NOT NULL;
    ALTER TABLE inbound ADD COLUMN rule TEXT NOT NULL DEFAULT '';
    ALTER TABLE inbound ADD COLUMN reply_message_id TEXT NOT NULL DEFAULT '';
    ALTER TABLE inbound ADD COLUMN reply_note TEXT NOT NULL DEFAULT '';
    CREATE TABLE autoreplies (
        name TEXT PRIMARY KEY,
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

# A message whose recipient opted out before it could go. An auto-reply is spared
# only by a suppression older than itself: that is the opt-out's own confirmation.
_OPTED_OUT_SINCE_QUEUED = (
    "SELECT m.account, m.status FROM messages m JOIN suppressions s ON s.number = m.recipient "
    "WHERE m.id = ? AND (m.inbound_id IS NULL OR s.created_at > m.created_at)"
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


_RULE_COLUMNS = "name, position, kind, pattern, reply, account, number, active"


def _rule(row: Sequence[Any]) -> AutoReplyRule:
    return AutoReplyRule(row[0], row[1], row[2], row[3], row[4], row[5], row[6], bool(row[7]))


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


_WEBHOOK_COLUMNS = (
    "id, url, secret, events, description, active, cursor, last_status, last_error, "
    "last_attempt_at, failures, delivered, created_at"
)


def _webhook(row: Sequence[Any], pending: int = 0) -> Webhook:
    return Webhook(
        id=row[0],
        url=row[1],
        secret=row[2],
        events=tuple(json.loads(row[3])),
        description=row[4],
        active=bool(row[5]),
        cursor=row[6],
        last_status=row[7],
        last_error=row[8],
        last_attempt_at=row[9],
        failures=row[10],
        delivered=row[11],
        created_at=row[12],
        pending=pending,
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
            await self._insert_messages(tx, messages)
            return response

        return await self._write(work)

    async def _insert_messages(self, tx: _Tx, messages: Sequence[NewMessage]) -> None:
        """New messages and their outbox rows; an opted-out recipient's message fails
        at once and never reaches the outbox."""
        now = iso_now()
        await tx.db.executemany(
            "INSERT INTO messages (id, account, recipient, sender, text, encoding, segments, "
            "status, client_ref, routed, inbound_id, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?)",
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
                    m.inbound_id,
                    now,
                    now,
                )
                for m in messages
            ],
        )
        await tx.db.executemany(
            "INSERT INTO outbox (message_id, due_at) VALUES (?, 0)",
            [(m.id,) for m in messages if not m.opted_out],
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
                **({"inbound_id": m.inbound_id} if m.inbound_id is not None else {}),
            )
            if m.opted_out:
                await self._fail_opted_out(tx, m.id, m.account, Status.QUEUED)

    async def _fail_opted_out(self, tx: _Tx, message_id: str, account: str, old: Status) -> None:
        await tx.db.execute(
            "UPDATE messages SET error_code = ?, error_text = ? WHERE id = ?",
            (OPTED_OUT, OPTED_OUT_TEXT, message_id),
        )
        await tx.db.execute("DELETE FROM outbox WHERE message_id = ?", (message_id,))
        await self._set_status(
            tx,
            message_id,
            account,
            old,
            Status.FAILED,
            error_code=OPTED_OUT,
            error_text=OPTED_OUT_TEXT,
        )

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
                async with tx.db.execute(_OPTED_OUT_SINCE_QUEUED, (message_id,)) as cursor:
                    opted_out = await cursor.fetchone()
                if opted_out is not None:
                    await self._fail_opted_out(tx, message_id, opted_out[0], Status(opted_out[1]))
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

    async def receive_inbound(
        self, account: str, inbound: InboundSms, replies_since: str, plan: InboundPlanner
    ) -> InboundResult:
        async def work(tx: _Tx) -> InboundResult:
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
            seen = {
                "provider_id": inbound.provider_id,
                "sender": inbound.sender,
                "recipient": inbound.recipient,
            }
            if not cursor.rowcount:
                await tx.event("inbound.duplicate", "", account, **seen)
                return InboundResult(0, InboundDecision(note="duplicate"))
            inbound_id = cursor.lastrowid or 0
            decision = plan(await self._inbound_facts(tx, inbound, replies_since))
            await tx.event(
                "inbound.received",
                "",
                account,
                inbound_id=inbound_id,
                **seen,
                rule=decision.rule,
                reply_message_id=decision.reply.id if decision.reply else "",
                reply_note=decision.note,
            )
            await self._carry_out(tx, account, inbound, inbound_id, decision)
            return InboundResult(inbound_id, decision)

        return await self._write(work)

    async def _inbound_facts(self, tx: _Tx, inbound: InboundSms, since: str) -> InboundFacts:
        async def one(sql: str, *params: Any) -> Any:
            async with tx.db.execute(sql, params) as cursor:
                row = await cursor.fetchone()
            return row[0] if row else None

        async with tx.db.execute(
            f"SELECT {_RULE_COLUMNS} FROM autoreplies WHERE active = 1 ORDER BY position, name"
        ) as cursor:
            rules = [_rule(row) for row in await cursor.fetchall()]
        async with tx.db.execute("SELECT sender, fallback_sender FROM accounts") as cursor:
            senders = [n for row in await cursor.fetchall() for n in row]
        return InboundFacts(
            rules=rules,
            suppressed=await one("SELECT 1 FROM suppressions WHERE number = ?", inbound.sender)
            is not None,
            own_numbers=frozenset(filter(None, map(reconcile.recipient_key, senders))),
            recent_replies=await one(
                "SELECT COUNT(*) FROM messages WHERE recipient = ? AND inbound_id IS NOT NULL "
                "AND created_at >= ?",
                inbound.sender,
                since,
            ),
            echoes_auto_reply=await one(
                "SELECT 1 FROM messages WHERE inbound_id IS NOT NULL AND created_at >= ? "
                "AND text = ? LIMIT 1",
                since,
                inbound.text,
            )
            is not None,
        )

    async def _carry_out(
        self,
        tx: _Tx,
        account: str,
        inbound: InboundSms,
        inbound_id: int,
        decision: InboundDecision,
    ) -> None:
        if decision.suppress is True:
            await self._suppress(tx, inbound.sender, inbound.text.strip().upper()[:32], account)
        elif decision.suppress is False:
            await self._unsuppress(tx, inbound.sender)
        reply = decision.reply
        if reply is not None:
            await self._insert_messages(tx, [replace(reply, inbound_id=inbound_id)])
            if decision.inline:
                # Handed to the provider in the callback's answer: in flight, not queued.
                await tx.db.execute("DELETE FROM outbox WHERE message_id = ?", (reply.id,))
                await tx.db.execute("UPDATE messages SET attempts = 1 WHERE id = ?", (reply.id,))
                await self._set_status(tx, reply.id, account, Status.QUEUED, Status.SENDING)
        await tx.db.execute(
            "UPDATE inbound SET rule = ?, reply_message_id = ?, reply_note = ? WHERE id = ?",
            (decision.rule, reply.id if reply else "", decision.note, inbound_id),
        )

    async def list_inbound(self, limit: int, before_id: int | None) -> list[InboundRecord]:
        clause = "WHERE i.id < ?" if before_id is not None else ""
        params = (before_id, limit) if before_id is not None else (limit,)
        columns = ", ".join(f"m.{c.strip()}" for c in _MESSAGE_COLUMNS.split(","))
        rows = await self._fetchall(
            "SELECT i.id, i.account, i.sender, i.recipient, i.text, i.provider_id, "
            f"i.received_at, i.rule, i.reply_note, {columns} FROM inbound i "
            "LEFT JOIN messages m ON m.id = i.reply_message_id AND i.reply_message_id != '' "
            f"{clause} ORDER BY i.id DESC LIMIT ?",
            params,
        )
        return [
            InboundRecord(
                row[0],
                row[1],
                row[2],
                row[3],
                row[4],
                row[5],
                row[6],
                rule=row[7],
                reply_note=row[8],
                reply=_message(row[9:]) if row[9] is not None else None,
            )
            for row in rows
        ]

    async def adopt_request_id(
        self, account: str, message_id: str, request_id: str, key: tuple[str, str]
    ) -> bool:
        async def work(tx: _Tx) -> bool:
            async with tx.db.execute(
                "SELECT 1 FROM messages WHERE id = ? AND account = ? AND status = 'sending' "
                "AND request_id = '' AND inbound_id IS NOT NULL",
                (message_id, account),
            ) as cursor:
                if await cursor.fetchone() is None:
                    return False
            await self._conclude(
                tx,
                AttemptResult(
                    message_id, Decision.ACCEPTED, request_ids=(request_id,), keys=(key,)
                ),
            )
            return True

        return await self._write(work)

    # -- auto-reply rules and the suppression list ----------------------------------

    async def list_rules(self) -> list[AutoReplyRule]:
        rows = await self._fetchall(
            f"SELECT {_RULE_COLUMNS} FROM autoreplies ORDER BY position, name"
        )
        return [_rule(row) for row in rows]

    async def put_rule(self, rule: AutoReplyRule) -> bool:
        async def work(tx: _Tx) -> bool:
            now = iso_now()
            cursor = await tx.db.execute(
                f"INSERT INTO autoreplies ({_RULE_COLUMNS}, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET "
                "position = excluded.position, kind = excluded.kind, "
                "pattern = excluded.pattern, reply = excluded.reply, "
                "account = excluded.account, number = excluded.number, "
                "active = excluded.active, updated_at = excluded.updated_at "
                "RETURNING created_at = updated_at",
                (
                    rule.name,
                    rule.position,
                    rule.kind,
                    rule.pattern,
                    rule.reply,
                    rule.account,
                    rule.number,
                    int(rule.active),
                    now,
                    now,
                ),
            )
            row = await cursor.fetchone()
            created = bool(row and row[0])
            await tx.event("autoreply.created" if created else "autoreply.updated", rule=rule.name)
            return created

        return await self._write(work)

    async def delete_rule(self, name: str) -> bool:
        async def work(tx: _Tx) -> bool:
            cursor = await tx.db.execute("DELETE FROM autoreplies WHERE name = ?", (name,))
            if cursor.rowcount:
                await tx.event("autoreply.deleted", rule=name)
            return cursor.rowcount > 0

        return await self._write(work)

    async def suppressed(self, numbers: Sequence[str]) -> set[str]:
        found: set[str] = set()
        unique = sorted(set(numbers))
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            rows = await self._fetchall(
                "SELECT number FROM suppressions WHERE number IN "
                f"({', '.join('?' for _ in chunk)})",
                chunk,
            )
            found.update(row[0] for row in rows)
        return found

    async def suppress(self, number: str, keyword: str, account: str) -> bool:
        async def work(tx: _Tx) -> bool:
            return await self._suppress(tx, number, keyword, account)

        return await self._write(work)

    async def unsuppress(self, number: str) -> bool:
        async def work(tx: _Tx) -> bool:
            return await self._unsuppress(tx, number)

        return await self._write(work)

    async def _suppress(self, tx: _Tx, number: str, keyword: str, account: str) -> bool:
        cursor = await tx.db.execute(
            "INSERT INTO suppressions (number, keyword, account, created_at) "
            "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (number, keyword, account, iso_now()),
        )
        if cursor.rowcount:
            await tx.event("suppression.added", "", account, number=number, keyword=keyword)
        return cursor.rowcount > 0

    async def _unsuppress(self, tx: _Tx, number: str) -> bool:
        cursor = await tx.db.execute(
            "DELETE FROM suppressions WHERE number = ? RETURNING account", (number,)
        )
        row = await cursor.fetchone()
        if row is not None:
            await tx.event("suppression.removed", "", row[0], number=number)
        return row is not None

    async def list_suppressions(self) -> list[Suppression]:
        rows = await self._fetchall(
            "SELECT number, keyword, account, created_at FROM suppressions "
            "ORDER BY created_at DESC, number"
        )
        return [Suppression(*row) for row in rows]

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

    # -- webhooks --------------------------------------------------------------

    async def create_webhook(self, webhook: NewWebhook) -> Webhook:
        async def work(tx: _Tx) -> Webhook:
            await tx.event("webhook.created", webhook_id=webhook.id, events=list(webhook.events))
            # The cursor is read after that event, in the same transaction: the
            # webhook's first delivery is the first event committed after it exists.
            cursor = await tx.db.execute(
                "INSERT INTO webhooks (id, url, secret, events, description, cursor, created_at) "
                "VALUES (?, ?, ?, ?, ?, (SELECT COALESCE(MAX(id), 0) FROM events), ?) "
                f"RETURNING {_WEBHOOK_COLUMNS}",
                (
                    webhook.id,
                    webhook.url,
                    webhook.secret,
                    json.dumps(list(webhook.events)),
                    webhook.description,
                    iso_now(),
                ),
            )
            row = await cursor.fetchone()
            assert row is not None
            return _webhook(row)

        return await self._write(work)

    async def list_webhooks(self) -> list[Webhook]:
        return [_webhook(row, row[-1]) for row in await self._select_webhooks("", ())]

    async def get_webhook(self, webhook_id: str) -> Webhook | None:
        rows = await self._select_webhooks("WHERE w.id = ?", (webhook_id,))
        return _webhook(rows[0], rows[0][-1]) if rows else None

    async def _select_webhooks(self, where: str, params: tuple[Any, ...]) -> list[sqlite3.Row]:
        return await self._fetchall(
            f"SELECT {_WEBHOOK_COLUMNS}, (SELECT COUNT(*) FROM webhook_deliveries d "
            f"WHERE d.webhook_id = w.id) FROM webhooks w {where} ORDER BY w.created_at, w.id",
            params,
        )

    async def delete_webhook(self, webhook_id: str) -> bool:
        async def work(tx: _Tx) -> bool:
            cursor = await tx.db.execute("DELETE FROM webhooks WHERE id = ?", (webhook_id,))
            if not cursor.rowcount:
                return False
            await tx.db.execute(
                "DELETE FROM webhook_deliveries WHERE webhook_id = ?", (webhook_id,)
            )
            await tx.event("webhook.deleted", webhook_id=webhook_id)
            return True

        return await self._write(work)

    async def fan_out_webhooks(self, now: float, limit: int) -> int:
        # Most passes find nothing new: a read settles that without a write transaction.
        [(behind, newest)] = await self._fetchall(
            "SELECT (SELECT MIN(cursor) FROM webhooks WHERE active = 1), "
            "(SELECT MAX(id) FROM events)"
        )
        if behind is None or newest is None or newest <= behind:
            return 0

        async def work(tx: _Tx) -> int:
            async with tx.db.execute(
                f"SELECT {_WEBHOOK_COLUMNS} FROM webhooks WHERE active = 1"
            ) as cursor:
                hooks = [_webhook(row) for row in await cursor.fetchall()]
            if not hooks:
                return 0
            async with tx.db.execute(
                "SELECT id, event FROM events WHERE id > ? ORDER BY id LIMIT ?",
                (min(h.cursor for h in hooks), limit),
            ) as cursor:
                events = list(await cursor.fetchall())
            if not events:
                return 0
            await tx.db.executemany(
                "INSERT INTO webhook_deliveries (webhook_id, event_id, due_at, first_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                [
                    (hook.id, event_id, now, now)
                    for hook in hooks
                    for event_id, name in events
                    if event_id > hook.cursor and hook.wants(name)
                ],
            )
            last = events[-1][0]
            await tx.db.executemany(
                "UPDATE webhooks SET cursor = ? WHERE id = ? AND cursor < ?",
                [(last, hook.id, last) for hook in hooks],
            )
            return len(events)

        return await self._write(work)

    async def claim_webhook_deliveries(
        self, now: float, lease: float, limit: int
    ) -> list[WebhookDelivery]:
        due = await self._fetchall(
            "SELECT 1 FROM webhook_deliveries WHERE due_at <= ? "
            "AND (claimed_until IS NULL OR claimed_until < ?) LIMIT 1",
            (now, now),
        )
        if not due:
            return []

        async def work(tx: _Tx) -> list[WebhookDelivery]:
            # BEGIN IMMEDIATE holds the write lock from this read to the claim below,
            # so no other process can claim the same rows in between.
            async with tx.db.execute(
                "SELECT d.webhook_id, w.url, w.secret, d.attempts, d.first_at, "
                "e.id, e.ts, e.event, e.message_id, e.account, e.data "
                "FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id "
                "JOIN events e ON e.id = d.event_id "
                "WHERE w.active = 1 AND d.due_at <= ? "
                "AND (d.claimed_until IS NULL OR d.claimed_until < ?) "
                "ORDER BY d.due_at, d.event_id LIMIT ?",
                (now, now, limit),
            ) as cursor:
                rows = list(await cursor.fetchall())
            await tx.db.executemany(
                "UPDATE webhook_deliveries SET claimed_until = ?, attempts = attempts + 1 "
                "WHERE webhook_id = ? AND event_id = ?",
                [(now + lease, row[0], row[5]) for row in rows],
            )
            return [
                WebhookDelivery(row[0], row[1], row[2], _event(row[5:]), row[3] + 1, row[4])
                for row in rows
            ]

        return await self._write(work)

    async def record_webhook_attempt(self, attempt: WebhookAttempt) -> None:
        async def work(tx: _Tx) -> None:
            key = (attempt.webhook_id, attempt.event_id)
            if attempt.outcome is WebhookOutcome.RETRY:
                cursor = await tx.db.execute(
                    "UPDATE webhook_deliveries SET due_at = ?, claimed_until = NULL "
                    "WHERE webhook_id = ? AND event_id = ?",
                    (attempt.retry_at, *key),
                )
            elif attempt.outcome is WebhookOutcome.GONE:
                await tx.db.execute(
                    "UPDATE webhooks SET active = 0 WHERE id = ?", (attempt.webhook_id,)
                )
                cursor = await tx.db.execute(
                    "DELETE FROM webhook_deliveries WHERE webhook_id = ?", (attempt.webhook_id,)
                )
            else:
                cursor = await tx.db.execute(
                    "DELETE FROM webhook_deliveries WHERE webhook_id = ? AND event_id = ?", key
                )
            if not cursor.rowcount:
                return  # deleted or disabled while this attempt was out: nothing to tell
            delivered = attempt.outcome is WebhookOutcome.DELIVERED
            await tx.db.execute(
                "UPDATE webhooks SET last_status = ?, last_error = ?, last_attempt_at = ?, "
                "delivered = delivered + ?, failures = CASE WHEN ? THEN 0 ELSE failures + 1 END "
                "WHERE id = ?",
                (
                    attempt.http_status,
                    attempt.error,
                    iso_now(),
                    int(delivered),
                    delivered,
                    attempt.webhook_id,
                ),
            )

        await self._write(work)

    # -- metrics ---------------------------------------------------------------

    async def gauges(self) -> Gauges:
        by_status = await self._fetchall(
            "SELECT account, status, COUNT(*) FROM messages GROUP BY account, status"
        )
        [(outbox, backlog)] = await self._fetchall(
            "SELECT (SELECT COUNT(*) FROM outbox), (SELECT COUNT(*) FROM webhook_deliveries)"
        )
        return Gauges({(row[0], row[1]): row[2] for row in by_status}, outbox, backlog)
