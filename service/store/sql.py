"""The store's transaction logic, written once against a small transaction interface.

`SqlStore` holds every read and every transaction of the Store Protocol as SQL with
`?` placeholders and the rules of service.reconcile and service.autoreply. A backend
(sqlite.py, postgres.py) supplies connections, transactions and migrations through a
`Tx`, and the few dialect differences: column types in the schema, row locks (none
on SQLite, whose single writer already serializes every transaction), named locks
and which stored events a reader may see yet.

Locking order, so that concurrent transactions on PostgreSQL cannot deadlock in the
common paths: named locks on match keys first, then message rows, and the counters
rows last of all, written once at the end of each transaction (`Tx.finish`).
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any, ClassVar, TypeVar

from service import reconcile
from service.clock import iso_now
from service.errors import Conflict
from service.model import (
    OPTED_OUT,
    OPTED_OUT_TEXT,
    Account,
    AttemptResult,
    AutoReplyRule,
    Counters,
    Decision,
    Event,
    Gauges,
    InboundDecision,
    InboundFacts,
    InboundRecord,
    InboundResult,
    InboundSms,
    MessageFilter,
    MessageRecord,
    NewMessage,
    NewWebhook,
    PollDue,
    Report,
    ReportOutcome,
    Stats,
    Status,
    Suppression,
    Webhook,
    WebhookAttempt,
    WebhookDelivery,
    WebhookOutcome,
)
from service.sealing import Sealer
from service.store.protocol import EventSink, InboundPlanner

T = TypeVar("T")
Row = tuple[Any, ...]

# The schema, one script per version. `{id}` is an auto-numbered primary key,
# `{event_id}` the events table's key, `{bigint}` a 64-bit integer and `{real}` a
# double: the only words the two dialects spell differently.
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
        options TEXT NOT NULL DEFAULT '{{}}',
        callback_secret TEXT NOT NULL,
        description TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE messages (
        seq {id},
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
        id {id},
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
        id {event_id},
        ts TEXT NOT NULL,
        event TEXT NOT NULL,
        message_id TEXT NOT NULL DEFAULT '',
        account TEXT NOT NULL DEFAULT '',
        data TEXT NOT NULL
    );
    CREATE INDEX events_message ON events(message_id, id);
    CREATE TABLE inbound (
        id {id},
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
        due_at {real} NOT NULL,
        claimed_until {real}
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
        due_at {real} NOT NULL,
        tries INTEGER NOT NULL,
        since {real} NOT NULL
    );
    CREATE INDEX polls_due ON polls(due_at);
    """,
    # 3: delivery latency, auto-replies and opt-outs, outbound event webhooks.
    """
    ALTER TABLE messages ADD COLUMN submitted_at {real};
    ALTER TABLE messages ADD COLUMN inbound_id {bigint};
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
        cursor {bigint} NOT NULL,
        last_status INTEGER,
        last_error TEXT NOT NULL DEFAULT '',
        last_attempt_at TEXT NOT NULL DEFAULT '',
        failures INTEGER NOT NULL DEFAULT 0,
        delivered INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL
    );
    CREATE TABLE webhook_deliveries (
        webhook_id TEXT NOT NULL,
        event_id {bigint} NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        due_at {real} NOT NULL,
        first_at {real} NOT NULL,
        claimed_until {real},
        PRIMARY KEY (webhook_id, event_id)
    );
    CREATE INDEX webhook_deliveries_due ON webhook_deliveries(due_at);
    """,
    # 4: the web console's hourly chart reads final messages by when they became final
    # (a final status is never changed, so updated_at is that moment). Partial, so that
    # only final rows pay for it; the predicate is the same text as in _FINAL_BY_HOUR,
    # which planners need to use a partial index.
    """
    CREATE INDEX messages_final_at ON messages(status, updated_at)
        WHERE status IN ('delivered', 'undelivered', 'expired', 'rejected', 'failed');
    """,
)


def statements(script: str, types: Mapping[str, str]) -> list[str]:
    """One migration script in a dialect's words, statement by statement."""
    return [s.strip() for s in script.format_map(types).split(";") if s.strip()]


async def migrate(tx: Tx, types: Mapping[str, str]) -> None:
    """Bring the schema up to the newest version, inside the caller's transaction.

    The lock makes processes that start at once take turns: the first migrates, the
    others wait and then find the schema current.
    """
    await tx.lock("smsgw.schema")
    await tx.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER)")
    row = await tx.fetchone("SELECT MAX(version) FROM schema_version")
    current = (row[0] if row else None) or 0
    for version, script in enumerate(MIGRATIONS, start=1):
        if version > current:
            for statement in statements(script, types):
                await tx.execute(statement)
            await tx.execute("INSERT INTO schema_version VALUES (?)", (version,))


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
_M_COLUMNS = ", ".join(f"m.{c.strip()}" for c in _MESSAGE_COLUMNS.split(","))
_ACCOUNT_COLUMNS = (
    "name, provider, credentials, sender, fallback_sender, active, pattern, priority, "
    "base_url, options, callback_secret, description, logo_url, signup_url"
)
_COUNTER_SET = ", ".join(f"{n} = counters.{n} + excluded.{n}" for n in reconcile.COUNTER_NAMES)
_COUNTER_UPSERT = (
    f"INSERT INTO counters (account, {', '.join(reconcile.COUNTER_NAMES)}) "
    f"VALUES (?, {', '.join('?' for _ in reconcile.COUNTER_NAMES)}) "
    f"ON CONFLICT(account) DO UPDATE SET {_COUNTER_SET}"
)
_EVENT_COLUMNS = "id, ts, event, message_id, account, data"
_FINAL_BY_HOUR = (
    "SELECT substr(updated_at, 1, 13), status, COUNT(*) FROM messages "
    "WHERE status IN ('delivered', 'undelivered', 'expired', 'rejected', 'failed') "
    "AND updated_at >= ? GROUP BY substr(updated_at, 1, 13), status ORDER BY 1"
)
_RULE_COLUMNS = "name, position, kind, pattern, reply, account, number, active"
_WEBHOOK_COLUMNS = (
    "id, url, secret, events, description, active, cursor, last_status, last_error, "
    "last_attempt_at, failures, delivered, created_at"
)
_IN_CHUNK = 500


def placeholders(n: int) -> str:
    return ", ".join("?" for _ in range(n))


class Tx(ABC):
    """One transaction: SQL with `?` placeholders, plus the events and counter
    changes it writes. Rows are tuples in the order of the selected columns."""

    FOR_UPDATE: ClassVar[str] = ""
    """Appended to a SELECT whose rows the transaction goes on to change."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._counters: dict[str, Counters] = {}
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

    def skip_locked(self, table: str) -> str:
        """Appended to a claim's SELECT: rows another transaction is claiming are
        left to it rather than waited for."""
        return ""

    @abstractmethod
    async def _store_event(
        self, ts: str, name: str, message_id: str, account: str, data: str
    ) -> int:
        """Write one event; returns its id."""

    async def event(self, name: str, message_id: str = "", account: str = "", **data: Any) -> Event:
        ts = self.now()
        event_id = await self._store_event(
            ts, name, message_id, account, json.dumps(data, separators=(",", ":"))
        )
        event = Event(name, ts, message_id, account, data, event_id)
        self.events.append(event)
        return event

    def add_counters(self, account: str, delta: Counters) -> None:
        self._counters[account] = self._counters.get(account, Counters()) + delta

    def take_counters(self) -> dict[str, Counters]:
        """The counter changes collected so far, handed over once."""
        counters, self._counters = self._counters, {}
        return counters

    async def finish(self) -> None:
        """Write what the transaction collected, just before it commits."""
        await write_counters(self, self.take_counters())


async def write_counters(tx: Tx, changes: Mapping[str, Counters]) -> None:
    """Add counter changes to the counters table, accounts in name order."""
    rows = [
        (account, *delta.as_tuple())
        for account, delta in sorted(changes.items())
        if not delta.is_zero()
    ]
    if rows:
        await tx.executemany(_COUNTER_UPSERT, rows)


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


def _rule(row: Sequence[Any]) -> AutoReplyRule:
    return AutoReplyRule(row[0], row[1], row[2], row[3], row[4], row[5], row[6], bool(row[7]))


def _account(row: Sequence[Any], sealer: Sealer | None) -> Account:
    return Account(
        name=row[0],
        provider=row[1],
        credentials=sealer.unseal(row[2]) if sealer else json.loads(row[2]),
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


def _account_values(account: Account, sealer: Sealer | None) -> tuple[Any, ...]:
    credentials = dict(account.credentials)
    return (
        account.name,
        account.provider,
        sealer.seal(credentials) if sealer else json.dumps(credentials),
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


def _key_lock(account: str, key: tuple[str, str]) -> str:
    return f"report:{account}:{key[0]}:{key[1]}"


class SqlStore(ABC):
    """Everything of the Store Protocol but connections, transactions and migrations."""

    VISIBLE_EVENTS: ClassVar[str] = ""
    """ANDed into reads of events by id: hides events that a transaction still running
    could yet precede, so that a reader's cursor never passes an id not yet committed."""

    def __init__(self, on_events: EventSink | None, sealer: Sealer | None = None) -> None:
        self._on_events = on_events or (lambda events: None)
        # Without a sealer (stores the tests open directly) credentials stay plain JSON.
        self._sealer = sealer

    @abstractmethod
    async def _write(self, work: Callable[[Tx], Awaitable[T]]) -> T:
        """Run `work` in a transaction and commit it; events reach the sink after."""

    @abstractmethod
    async def _fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[Row]:
        """A read outside any write transaction."""

    # -- accounts --------------------------------------------------------------

    async def create_account(self, account: Account) -> None:
        async def work(tx: Tx) -> None:
            now = iso_now()
            created = await tx.execute(
                f"INSERT INTO accounts ({_ACCOUNT_COLUMNS}, created_at, updated_at) "
                f"VALUES ({placeholders(16)}) ON CONFLICT DO NOTHING",
                (*_account_values(account, self._sealer), now, now),
            )
            if not created:
                raise Conflict(f"account {account.name!r} exists", field="name")
            await tx.event("account.created", account=account.name, provider=account.provider)

        await self._write(work)

    async def get_account(self, name: str) -> Account | None:
        rows = await self._fetchall(
            f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE name = ?", (name,)
        )
        return _account(rows[0], self._sealer) if rows else None

    async def list_accounts(self) -> list[Account]:
        rows = await self._fetchall(
            f"SELECT {_ACCOUNT_COLUMNS} FROM accounts ORDER BY priority, name"
        )
        return [_account(row, self._sealer) for row in rows]

    async def update_account(self, account: Account) -> None:
        async def work(tx: Tx) -> None:
            values = _account_values(account, self._sealer)
            await tx.execute(
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
        async def work(tx: Tx) -> bool:
            deleted = await tx.execute("DELETE FROM accounts WHERE name = ?", (name,))
            if deleted:
                await tx.event("account.deleted", account=name)
            return deleted > 0

        return await self._write(work)

    # -- messages --------------------------------------------------------------

    async def enqueue(
        self,
        messages: Sequence[NewMessage],
        response: Mapping[str, Any],
        idempotency: tuple[str, str] | None = None,
    ) -> Mapping[str, Any]:
        async def work(tx: Tx) -> Mapping[str, Any]:
            if idempotency is not None:
                key, body_hash = idempotency
                # Insert first: of two requests racing with one key, the second waits
                # for the first to commit and then reads its answer.
                fresh = await tx.execute(
                    "INSERT INTO idempotency (key, body_hash, response, created_at) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    (key, body_hash, json.dumps(response), iso_now()),
                )
                if not fresh:
                    seen = await tx.fetchone(
                        "SELECT body_hash, response FROM idempotency WHERE key = ?", (key,)
                    )
                    assert seen is not None
                    if seen[0] != body_hash:
                        raise Conflict(
                            "Idempotency-Key was used with a different body",
                            field="Idempotency-Key",
                            code="idempotency_conflict",
                        )
                    stored: Mapping[str, Any] = json.loads(seen[1])
                    return stored
            await self._insert_messages(tx, messages)
            return response

        return await self._write(work)

    async def _insert_messages(self, tx: Tx, messages: Sequence[NewMessage]) -> None:
        """New messages and their outbox rows; an opted-out recipient's message fails
        at once and never reaches the outbox."""
        now = iso_now()
        await tx.executemany(
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
        await tx.executemany(
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

    async def _fail_opted_out(self, tx: Tx, message_id: str, account: str, old: Status) -> None:
        await tx.execute(
            "UPDATE messages SET error_code = ?, error_text = ? WHERE id = ?",
            (OPTED_OUT, OPTED_OUT_TEXT, message_id),
        )
        await tx.execute("DELETE FROM outbox WHERE message_id = ?", (message_id,))
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
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE message_id = ? ORDER BY id",
            (message_id,),
        )
        return [_event(row) for row in rows]

    async def events_after(self, after: int, limit: int) -> list[Event]:
        rows = await self._fetchall(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE id > ?{self.VISIBLE_EVENTS} "
            "ORDER BY id LIMIT ?",
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
        rows = await self._fetchall(
            f"SELECT {_M_COLUMNS} FROM outbox o JOIN messages m ON m.id = o.message_id "
            "WHERE o.claimed_until IS NULL AND o.due_at <= ? ORDER BY o.due_at, m.seq LIMIT ?",
            (now, limit),
        )
        return [_message(row) for row in rows]

    async def claim(self, message_ids: Sequence[str], now: float, lease: float) -> list[str]:
        async def work(tx: Tx) -> list[str]:
            free: set[str] = set()
            unique = sorted(set(message_ids))
            for start in range(0, len(unique), _IN_CHUNK):
                chunk = unique[start : start + _IN_CHUNK]
                rows = await tx.fetchall(
                    "SELECT message_id FROM outbox WHERE claimed_until IS NULL AND message_id "
                    f"IN ({placeholders(len(chunk))}) ORDER BY message_id"
                    f"{tx.skip_locked('outbox')}",
                    chunk,
                )
                free.update(row[0] for row in rows)
            won = []
            for message_id in (m for m in dict.fromkeys(message_ids) if m in free):
                await tx.execute(
                    "UPDATE outbox SET claimed_until = ? WHERE message_id = ?",
                    (now + lease, message_id),
                )
                opted_out = await tx.fetchone(_OPTED_OUT_SINCE_QUEUED, (message_id,))
                if opted_out is not None:
                    await self._fail_opted_out(tx, message_id, opted_out[0], Status(opted_out[1]))
                    continue
                won.append(message_id)
                row = await tx.fetchone(
                    "UPDATE messages SET status = 'sending', attempts = attempts + 1, "
                    "updated_at = ? WHERE id = ? AND status = 'queued' RETURNING account",
                    (iso_now(), message_id),
                )
                if row is not None:
                    await tx.event(
                        "message.sending", message_id, row[0], status=Status.SENDING.value
                    )
                else:
                    await tx.execute(
                        "UPDATE messages SET attempts = attempts + 1 WHERE id = ?",
                        (message_id,),
                    )
            return won

        return await self._write(work)

    async def expire_claims(self, now: float) -> int:
        async def work(tx: Tx) -> int:
            rows = await tx.fetchall(
                "SELECT message_id FROM outbox WHERE claimed_until < ? ORDER BY message_id"
                f"{tx.skip_locked('outbox')}",
                (now,),
            )
            for (message_id,) in rows:
                interrupted = AttemptResult(
                    message_id,
                    Decision.UNKNOWN,
                    error_code="outcome_unknown",
                    error_text="the send was interrupted; not resent to avoid a duplicate",
                )
                await self._conclude(tx, interrupted)
            return len(rows)

        return await self._write(work)

    async def record_attempts(self, results: Sequence[AttemptResult]) -> None:
        async def work(tx: Tx) -> None:
            for result in results:
                await self._conclude(tx, result)

        await self._write(work)

    async def _load(self, tx: Tx, message_id: str) -> tuple[str, Status] | None:
        """A message's account and status, its row locked until the transaction ends."""
        row = await tx.fetchone(
            f"SELECT account, status FROM messages WHERE id = ?{tx.FOR_UPDATE}", (message_id,)
        )
        return (row[0], Status(row[1])) if row else None

    async def _set_status(
        self, tx: Tx, message_id: str, account: str, old: Status, new: Status, **data: Any
    ) -> None:
        """Move a message to `new` with its counter delta and its event."""
        row = await tx.fetchone(
            "UPDATE messages SET status = ?, updated_at = ? WHERE id = ? RETURNING submitted_at",
            (new.value, tx.now(), message_id),
        )
        if reconcile.is_final(new):
            await tx.execute("DELETE FROM polls WHERE message_id = ?", (message_id,))
            submitted_at = row[0] if row else None
            if submitted_at is not None:
                data["latency_ms"] = max(0, round((time.time() - submitted_at) * 1000))
        tx.add_counters(account, reconcile.counter_delta(old, new))
        await tx.event(
            f"message.{new.value}",
            message_id,
            account,
            status=new.value,
            previous=old.value,
            **data,
        )

    async def _conclude(self, tx: Tx, result: AttemptResult) -> None:
        """Record one attempt's result; every decision stores the provider's answer."""
        loaded = await self._load(tx, result.message_id)
        if loaded is None:
            return
        account, old = loaded
        await tx.execute(
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
        await tx.execute("DELETE FROM outbox WHERE message_id = ?", (result.message_id,))
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

    async def _reschedule(self, tx: Tx, account: str, result: AttemptResult) -> None:
        await tx.execute(
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
            await tx.execute(
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
            await tx.execute(
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
        self, tx: Tx, account: str, old: Status, result: AttemptResult
    ) -> None:
        """An accepted or refused message. Any request IDs the provider gave are kept,
        refused ones too, so that reports it sends for them later match and change
        nothing rather than wait as unmatched."""
        reached = result.status if result.decision is Decision.ACCEPTED else Status.FAILED
        request_id = ",".join(result.request_ids)
        for key in sorted(set(result.keys)):
            # Taken after the message's row lock, the reverse of apply_report; that
            # cannot deadlock, as a report meets this message's parts only once this
            # transaction has committed them.
            await tx.lock(_key_lock(account, key))
        await tx.execute(
            "UPDATE messages SET request_id = ?, submitted_at = COALESCE(submitted_at, ?) "
            "WHERE id = ?",
            (
                request_id,
                time.time() if result.decision is Decision.ACCEPTED else None,
                result.message_id,
            ),
        )
        await tx.executemany(
            "INSERT INTO message_parts (message_id, part, account, request_id, rid_key, "
            "rcpt_key, status) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (result.message_id, part, account, rid, key[0], key[1], reached.value)
                for part, (rid, key) in enumerate(zip(result.request_ids, result.keys, strict=True))
            ],
        )
        if result.poll_at is not None:
            await tx.execute(
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
        for rid_key, rcpt_key in sorted(set(result.keys)):
            parked = await tx.fetchall(
                "SELECT id, status, request_id, recipient, error_code, error_text FROM reports "
                "WHERE account = ? AND rid_key = ? AND rcpt_key = ? AND message_id IS NULL "
                "ORDER BY id",
                (account, rid_key, rcpt_key),
            )
            if not parked:
                continue
            matched = await self._matched_messages(tx, account, (rid_key, rcpt_key))
            for row in parked:
                report = Report(row[2], Status(row[1]), row[3], row[4], row[5])
                matched = await self._apply_to_messages(
                    tx, account, report, (rid_key, rcpt_key), matched, parked=True
                )
            await tx.execute(
                f"UPDATE reports SET message_id = ? WHERE id IN ({placeholders(len(parked))})",
                (matched[0][0] if matched else None, *(row[0] for row in parked)),
            )

    # -- polling ---------------------------------------------------------------

    async def due_polls(self, now: float, limit: int, lease: float) -> list[PollDue]:
        # Most passes find nothing due: a read settles that without a write transaction.
        if not await self._fetchall("SELECT 1 FROM polls WHERE due_at <= ? LIMIT 1", (now,)):
            return []

        async def work(tx: Tx) -> list[PollDue]:
            rows = await tx.fetchall(
                "SELECT message_id, due_at FROM polls WHERE due_at <= ? "
                f"ORDER BY due_at LIMIT ?{tx.skip_locked('polls')}",
                (now, limit),
            )
            # The lease: until the poller reschedules it, nobody else polls it; a
            # poller that died leaves it due again once the lease runs out.
            await tx.executemany(
                "UPDATE polls SET due_at = ? WHERE message_id = ?",
                [(now + lease, row[0]) for row in rows],
            )
            due = []
            for message_id, _ in rows:
                found = await tx.fetchone(
                    "SELECT p.message_id, m.account, m.request_id, p.tries, p.since "
                    "FROM polls p JOIN messages m ON m.id = p.message_id WHERE p.message_id = ?",
                    (message_id,),
                )
                if found is not None:
                    due.append(
                        PollDue(
                            found[0],
                            found[1],
                            tuple(filter(None, found[2].split(","))),
                            found[3],
                            found[4],
                        )
                    )
            return due

        return await self._write(work)

    async def reschedule_poll(self, message_id: str, due_at: float | None) -> None:
        async def work(tx: Tx) -> None:
            if due_at is None:
                gone = await tx.fetchone(
                    "DELETE FROM polls WHERE message_id = ? RETURNING message_id",
                    (message_id,),
                )
                if gone is not None:
                    loaded = await self._load(tx, message_id)
                    await tx.event("message.poll_gave_up", message_id, loaded[0] if loaded else "")
                return
            await tx.execute(
                "UPDATE polls SET due_at = ?, tries = tries + 1 WHERE message_id = ?",
                (due_at, message_id),
            )

        await self._write(work)

    # -- reports ---------------------------------------------------------------

    async def apply_report(
        self, account: str, report: Report, key: tuple[str, str]
    ) -> ReportOutcome:
        async def work(tx: Tx) -> ReportOutcome:
            # Serializes this report with its send response recorded elsewhere: either
            # the parts exist when the report looks for them, or the report is parked
            # when the response looks for parked reports.
            await tx.lock(_key_lock(account, key))
            matched = await self._matched_messages(tx, account, key)
            report_id = await tx.insert(
                "INSERT INTO reports (account, rid_key, rcpt_key, status, request_id, "
                "recipient, error_code, error_text, received_at, message_id) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (
                    account,
                    *key,
                    report.status.value,
                    report.request_id,
                    report.recipient,
                    report.error_code,
                    report.error_text,
                    tx.now(),
                    matched[0][0] if matched else None,
                ),
            )
            details = {
                "request_id": report.request_id,
                "status": report.status.value,
                "error_code": report.error_code,
            }
            if not report_id:
                message_id = matched[0][0] if matched else ""
                await tx.event("dlr.duplicate", message_id, account, **details)
                return ReportOutcome.DUPLICATE
            if not matched:
                await tx.event("dlr.unmatched", "", account, **details)
                return ReportOutcome.UNMATCHED
            await self._apply_to_messages(tx, account, report, key, matched, parked=False)
            return ReportOutcome.MATCHED

        return await self._write(work)

    async def _matched_messages(
        self, tx: Tx, account: str, key: tuple[str, str]
    ) -> list[tuple[str, Status]]:
        """The messages with a part under `key`, in id order, their rows locked: reports
        for two parts of one message, taken in two processes, combine one after the
        other."""
        rows = await tx.fetchall(
            "SELECT id, status FROM messages WHERE id IN (SELECT message_id FROM "
            "message_parts WHERE account = ? AND rid_key = ? AND rcpt_key = ?) "
            f"ORDER BY id{tx.FOR_UPDATE}",
            (account, *key),
        )
        return [(row[0], Status(row[1])) for row in rows]

    async def _apply_to_messages(
        self,
        tx: Tx,
        account: str,
        report: Report,
        key: tuple[str, str],
        matched: list[tuple[str, Status]],
        *,
        parked: bool,
    ) -> list[tuple[str, Status]]:
        """Apply a report to every part under `key` of the messages it matched; returns
        those messages with their statuses now."""
        after: list[tuple[str, Status]] = []
        for message_id, old in matched:
            # Read after the message row's lock (see _matched_messages).
            rows = await tx.fetchall(
                "SELECT part, status, rid_key = ? AND rcpt_key = ? FROM message_parts "
                "WHERE message_id = ? ORDER BY part",
                (*key, message_id),
            )
            parts = {row[0]: Status(row[1]) for row in rows}
            ordered = list(parts)
            for part in (row[0] for row in rows if row[2]):
                new_part = reconcile.advance(parts[part], report.status)
                if new_part is not parts[part]:
                    parts[part] = new_part
                    await tx.execute(
                        "UPDATE message_parts SET status = ? WHERE message_id = ? AND part = ?",
                        (new_part.value, message_id, part),
                    )
                combined = reconcile.combine_parts([parts[p] for p in ordered], ordered.index(part))
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
                        await tx.execute(
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
                    old = new
            after.append((message_id, old))
        return after

    # -- inbound ---------------------------------------------------------------

    async def receive_inbound(
        self, account: str, inbound: InboundSms, replies_since: str, plan: InboundPlanner
    ) -> InboundResult:
        async def work(tx: Tx) -> InboundResult:
            # One sender's messages are planned one at a time, so that two arriving at
            # once cannot both see room under the reply limit.
            await tx.lock(f"sender:{inbound.sender}")
            inbound_id = await tx.insert(
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
            if not inbound_id:
                await tx.event("inbound.duplicate", "", account, **seen)
                return InboundResult(0, InboundDecision(note="duplicate"))
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

    async def _inbound_facts(self, tx: Tx, inbound: InboundSms, since: str) -> InboundFacts:
        async def one(sql: str, *params: Any) -> Any:
            row = await tx.fetchone(sql, params)
            return row[0] if row else None

        rules = [
            _rule(row)
            for row in await tx.fetchall(
                f"SELECT {_RULE_COLUMNS} FROM autoreplies WHERE active = 1 ORDER BY position, name"
            )
        ]
        senders = [
            n
            for row in await tx.fetchall("SELECT sender, fallback_sender FROM accounts")
            for n in row
        ]
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
        tx: Tx,
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
                await tx.execute("DELETE FROM outbox WHERE message_id = ?", (reply.id,))
                await tx.execute("UPDATE messages SET attempts = 1 WHERE id = ?", (reply.id,))
                await self._set_status(tx, reply.id, account, Status.QUEUED, Status.SENDING)
        await tx.execute(
            "UPDATE inbound SET rule = ?, reply_message_id = ?, reply_note = ? WHERE id = ?",
            (decision.rule, reply.id if reply else "", decision.note, inbound_id),
        )

    async def list_inbound(self, limit: int, before_id: int | None) -> list[InboundRecord]:
        clause = "WHERE i.id < ?" if before_id is not None else ""
        params = (before_id, limit) if before_id is not None else (limit,)
        rows = await self._fetchall(
            "SELECT i.id, i.account, i.sender, i.recipient, i.text, i.provider_id, "
            f"i.received_at, i.rule, i.reply_note, {_M_COLUMNS} FROM inbound i "
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
        async def work(tx: Tx) -> bool:
            await tx.lock(_key_lock(account, key))
            found = await tx.fetchone(
                "SELECT 1 FROM messages WHERE id = ? AND account = ? AND status = 'sending' "
                f"AND request_id = '' AND inbound_id IS NOT NULL{tx.FOR_UPDATE}",
                (message_id, account),
            )
            if found is None:
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
        async def work(tx: Tx) -> bool:
            now = iso_now()
            row = await tx.fetchone(
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
            created = bool(row and row[0])
            await tx.event("autoreply.created" if created else "autoreply.updated", rule=rule.name)
            return created

        return await self._write(work)

    async def delete_rule(self, name: str) -> bool:
        async def work(tx: Tx) -> bool:
            deleted = await tx.execute("DELETE FROM autoreplies WHERE name = ?", (name,))
            if deleted:
                await tx.event("autoreply.deleted", rule=name)
            return deleted > 0

        return await self._write(work)

    async def suppressed(self, numbers: Sequence[str]) -> set[str]:
        found: set[str] = set()
        unique = sorted(set(numbers))
        for start in range(0, len(unique), _IN_CHUNK):
            chunk = unique[start : start + _IN_CHUNK]
            rows = await self._fetchall(
                f"SELECT number FROM suppressions WHERE number IN ({placeholders(len(chunk))})",
                chunk,
            )
            found.update(row[0] for row in rows)
        return found

    async def suppress(self, number: str, keyword: str, account: str) -> bool:
        async def work(tx: Tx) -> bool:
            return await self._suppress(tx, number, keyword, account)

        return await self._write(work)

    async def unsuppress(self, number: str) -> bool:
        async def work(tx: Tx) -> bool:
            return await self._unsuppress(tx, number)

        return await self._write(work)

    async def _suppress(self, tx: Tx, number: str, keyword: str, account: str) -> bool:
        added = await tx.execute(
            "INSERT INTO suppressions (number, keyword, account, created_at) "
            "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (number, keyword, account, iso_now()),
        )
        if added:
            await tx.event("suppression.added", "", account, number=number, keyword=keyword)
        return added > 0

    async def _unsuppress(self, tx: Tx, number: str) -> bool:
        row = await tx.fetchone(
            "DELETE FROM suppressions WHERE number = ? RETURNING account", (number,)
        )
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

    # -- web console (#5): final outcomes by hour ------------------------------------

    async def final_by_hour(self, since: str) -> list[tuple[str, Status, int]]:
        rows = await self._fetchall(_FINAL_BY_HOUR, (since,))
        return [(hour, Status(status), count) for hour, status, count in rows]

    # -- webhooks --------------------------------------------------------------

    async def create_webhook(self, webhook: NewWebhook) -> Webhook:
        async def work(tx: Tx) -> Webhook:
            created = await tx.event(
                "webhook.created", webhook_id=webhook.id, events=list(webhook.events)
            )
            # The cursor is that event: the webhook's first delivery is the first event
            # after the one that says it exists.
            row = await tx.fetchone(
                "INSERT INTO webhooks (id, url, secret, events, description, cursor, created_at) "
                f"VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING {_WEBHOOK_COLUMNS}",
                (
                    webhook.id,
                    webhook.url,
                    webhook.secret,
                    json.dumps(list(webhook.events)),
                    webhook.description,
                    created.id,
                    iso_now(),
                ),
            )
            assert row is not None
            return _webhook(row)

        return await self._write(work)

    async def list_webhooks(self) -> list[Webhook]:
        return [_webhook(row, row[-1]) for row in await self._select_webhooks("", ())]

    async def get_webhook(self, webhook_id: str) -> Webhook | None:
        rows = await self._select_webhooks("WHERE w.id = ?", (webhook_id,))
        return _webhook(rows[0], rows[0][-1]) if rows else None

    async def _select_webhooks(self, where: str, params: tuple[Any, ...]) -> list[Row]:
        return await self._fetchall(
            f"SELECT {_WEBHOOK_COLUMNS}, (SELECT COUNT(*) FROM webhook_deliveries d "
            f"WHERE d.webhook_id = w.id) FROM webhooks w {where} ORDER BY w.created_at, w.id",
            params,
        )

    async def delete_webhook(self, webhook_id: str) -> bool:
        async def work(tx: Tx) -> bool:
            if not await tx.execute("DELETE FROM webhooks WHERE id = ?", (webhook_id,)):
                return False
            await tx.execute("DELETE FROM webhook_deliveries WHERE webhook_id = ?", (webhook_id,))
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

        async def work(tx: Tx) -> int:
            # Locked, so that processes fanning out at once take turns instead of
            # queueing the same deliveries twice.
            hooks = [
                _webhook(row)
                for row in await tx.fetchall(
                    f"SELECT {_WEBHOOK_COLUMNS} FROM webhooks WHERE active = 1 "
                    f"ORDER BY id{tx.FOR_UPDATE}"
                )
            ]
            if not hooks:
                return 0
            events = await tx.fetchall(
                f"SELECT id, event FROM events WHERE id > ?{self.VISIBLE_EVENTS} "
                "ORDER BY id LIMIT ?",
                (min(h.cursor for h in hooks), limit),
            )
            if not events:
                return 0
            await tx.executemany(
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
            await tx.executemany(
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

        async def work(tx: Tx) -> list[WebhookDelivery]:
            # The rows stay locked from this read to the claim below (on SQLite, the
            # write lock does it), so no other process claims the same deliveries.
            rows = await tx.fetchall(
                "SELECT d.webhook_id, w.url, w.secret, d.attempts, d.first_at, "
                "e.id, e.ts, e.event, e.message_id, e.account, e.data "
                "FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id "
                "JOIN events e ON e.id = d.event_id "
                "WHERE w.active = 1 AND d.due_at <= ? "
                "AND (d.claimed_until IS NULL OR d.claimed_until < ?) "
                f"ORDER BY d.due_at, d.event_id LIMIT ?{tx.skip_locked('d')}",
                (now, now, limit),
            )
            await tx.executemany(
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
        async def work(tx: Tx) -> None:
            key = (attempt.webhook_id, attempt.event_id)
            if attempt.outcome is WebhookOutcome.RETRY:
                changed = await tx.execute(
                    "UPDATE webhook_deliveries SET due_at = ?, claimed_until = NULL "
                    "WHERE webhook_id = ? AND event_id = ?",
                    (attempt.retry_at, *key),
                )
            elif attempt.outcome is WebhookOutcome.GONE:
                await tx.execute(
                    "UPDATE webhooks SET active = 0 WHERE id = ?", (attempt.webhook_id,)
                )
                changed = await tx.execute(
                    "DELETE FROM webhook_deliveries WHERE webhook_id = ?", (attempt.webhook_id,)
                )
            else:
                changed = await tx.execute(
                    "DELETE FROM webhook_deliveries WHERE webhook_id = ? AND event_id = ?", key
                )
            if not changed:
                return  # deleted or disabled while this attempt was out: nothing to tell
            delivered = attempt.outcome is WebhookOutcome.DELIVERED
            await tx.execute(
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
