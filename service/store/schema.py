"""The stored schema, one migration script per version, and how a store applies them."""

from __future__ import annotations

from collections.abc import Mapping

from service.store.tx import Tx

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
    # only final rows pay for it; the predicate is the same text as in queries.FINAL_BY_HOUR,
    # which planners need to use a partial index.
    """
    CREATE INDEX messages_final_at ON messages(status, updated_at)
        WHERE status IN ('delivered', 'undelivered', 'expired', 'rejected', 'failed');
    """,
    # 5: console sessions live here, so that signing out ends one in every process.
    """
    CREATE TABLE console_sessions (
        id TEXT PRIMARY KEY,
        token_id TEXT NOT NULL,
        expires_at {bigint} NOT NULL
    );
    """,
    # 6: sends whose outcome is unknown. `unknown_since` marks one (and stays); until
    # `match_until` a report may find it by recipient; at `conclude_at` smsgw concludes
    # it, and `guessed` says its final status is smsgw's, which the provider's own final
    # report may still correct. Reports keep the reference (our message ID) a provider
    # echoed, and the recipient's digits, to find such a message once it is recorded.
    """
    ALTER TABLE messages ADD COLUMN unknown_since {real};
    ALTER TABLE messages ADD COLUMN match_until {real};
    ALTER TABLE messages ADD COLUMN conclude_at {real};
    ALTER TABLE messages ADD COLUMN guessed INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX messages_ambiguous ON messages(account, recipient)
        WHERE unknown_since IS NOT NULL;
    CREATE INDEX messages_conclude ON messages(conclude_at) WHERE conclude_at IS NOT NULL;
    ALTER TABLE reports ADD COLUMN reference TEXT NOT NULL DEFAULT '';
    ALTER TABLE reports ADD COLUMN rcpt_digits TEXT NOT NULL DEFAULT '';
    """,
    # 7: the callback inbox. A delivery-report callback is stored here, parsed and
    # authenticated, before its 2xx; the applier applies its reports later, in batches
    # (`applied_at` set then). `reports` holds the normalized reports with their match
    # keys, the other columns the callback as it came (secrets removed). Stored reports
    # name the callback they came in (`inbox_id`).
    """
    CREATE TABLE callback_inbox (
        id {id},
        account TEXT NOT NULL,
        received_at {real} NOT NULL,
        method TEXT NOT NULL,
        content_type TEXT NOT NULL DEFAULT '',
        query TEXT NOT NULL DEFAULT '',
        headers TEXT NOT NULL DEFAULT '{{}}',
        body TEXT NOT NULL DEFAULT '',
        reports TEXT NOT NULL,
        reply_ref TEXT NOT NULL DEFAULT '',
        applied_at {real}
    );
    CREATE INDEX callback_inbox_pending ON callback_inbox(id) WHERE applied_at IS NULL;
    CREATE INDEX callback_inbox_received ON callback_inbox(received_at);
    ALTER TABLE reports ADD COLUMN inbox_id {bigint};
    CREATE INDEX reports_inbox ON reports(inbox_id) WHERE inbox_id IS NOT NULL;
    """,
    # 8: clients, the applications that send through smsgw with keys of their own.
    # A key is kept only as its SHA-256 (`digest`); the webhook secret is sealed like
    # account credentials. `accounts` is a JSON list, NULL for every account. A message
    # names the client whose key sent it (NULL: an admin token), and each client has
    # its counters, kept like the accounts' in the same transactions.
    """
    CREATE TABLE clients (
        name TEXT PRIMARY KEY,
        active INTEGER NOT NULL DEFAULT 1,
        scopes TEXT NOT NULL,
        accounts TEXT,
        rate_per_second {real},
        quota_day {bigint},
        quota_month {bigint},
        callback_url TEXT NOT NULL DEFAULT '',
        webhook_secret TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE TABLE client_keys (
        id TEXT PRIMARY KEY,
        client TEXT NOT NULL,
        name TEXT NOT NULL,
        digest TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL,
        last_used_at TEXT,
        revoked_at TEXT
    );
    CREATE INDEX client_keys_client ON client_keys(client, created_at);
    ALTER TABLE messages ADD COLUMN client TEXT;
    CREATE INDEX messages_client ON messages(client, seq);
    CREATE TABLE client_counters (
        client TEXT PRIMARY KEY,
        requests INTEGER NOT NULL DEFAULT 0,
        accepted INTEGER NOT NULL DEFAULT 0,
        failed INTEGER NOT NULL DEFAULT 0,
        delivered INTEGER NOT NULL DEFAULT 0,
        undelivered INTEGER NOT NULL DEFAULT 0,
        pending INTEGER NOT NULL DEFAULT 0
    );
    """,
    # 9: schedules and validity. A scheduled message's outbox row is due at `send_at`,
    # so the claim that sends every message sends it; `expires_at` ends a message that
    # was not submitted in time. Cancelled messages have their own counter.
    """
    ALTER TABLE messages ADD COLUMN send_at {real};
    ALTER TABLE messages ADD COLUMN expires_at {real};
    CREATE INDEX messages_expires ON messages(expires_at) WHERE expires_at IS NOT NULL;
    ALTER TABLE counters ADD COLUMN cancelled INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE client_counters ADD COLUMN cancelled INTEGER NOT NULL DEFAULT 0;
    """,
    # 10: per-message status callbacks. A message keeps where its status changes go
    # (`callback_url`, '' for nowhere) and which (`callback_events`: final or all);
    # a 410 from the receiver sets `callback_stopped_at`. Each status change to
    # deliver is a row of `status_callbacks`, written in the transaction that made the
    # change, with the body it will carry on every attempt; its `seq` orders the
    # changes of one message and names the delivery (`webhook-id`). Rows stay once
    # settled (`state`), as the message's record of what it told the receiver, with
    # one `status_callback_attempts` row per answer.
    """
    ALTER TABLE messages ADD COLUMN callback_url TEXT NOT NULL DEFAULT '';
    ALTER TABLE messages ADD COLUMN callback_events TEXT NOT NULL DEFAULT 'final';
    ALTER TABLE messages ADD COLUMN callback_stopped_at TEXT;
    CREATE TABLE status_callbacks (
        seq {id},
        message_id TEXT NOT NULL,
        status TEXT NOT NULL,
        body TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending',
        attempts INTEGER NOT NULL DEFAULT 0,
        due_at {real} NOT NULL,
        first_at {real} NOT NULL,
        claimed_until {real}
    );
    CREATE INDEX status_callbacks_message ON status_callbacks(message_id, seq);
    CREATE INDEX status_callbacks_due ON status_callbacks(due_at) WHERE state = 'pending';
    CREATE TABLE status_callback_attempts (
        id {id},
        callback_seq {bigint} NOT NULL,
        message_id TEXT NOT NULL,
        at TEXT NOT NULL,
        http_status INTEGER,
        error TEXT NOT NULL DEFAULT '',
        outcome TEXT NOT NULL
    );
    CREATE INDEX status_callback_attempts_message ON status_callback_attempts(message_id, id);
    """,
    # 11: priority lanes. The outbox row carries its message's lane (0 high, 1 normal,
    # 2 bulk) and age (`seq`), so that each lane's due rows are read in order straight
    # from one index, without a join or a sort, however many wait in the other lanes.
    """
    ALTER TABLE messages ADD COLUMN priority TEXT NOT NULL DEFAULT 'normal';
    ALTER TABLE outbox ADD COLUMN lane INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE outbox ADD COLUMN seq {bigint} NOT NULL DEFAULT 0;
    UPDATE outbox SET seq = (SELECT m.seq FROM messages m WHERE m.id = outbox.message_id);
    CREATE INDEX outbox_lanes ON outbox(lane, due_at, seq) WHERE claimed_until IS NULL;
    DROP INDEX outbox_due;
    """,
    # 12: quotas and rate limits per client: a client's usage per UTC day (`starts`
    # 2026-12-08) and month (2026-12), counted when its messages are queued; its
    # rate-limit bucket, shared by every process; and when a message was counted
    # (`charged_at`, NULL for an admin token's or an opted-out one), so that a cancel
    # gives it back to the right periods.
    """
    CREATE TABLE client_usage (
        client TEXT NOT NULL,
        period TEXT NOT NULL,
        starts TEXT NOT NULL,
        used {bigint} NOT NULL DEFAULT 0,
        PRIMARY KEY (client, period, starts)
    );
    CREATE TABLE client_rates (
        client TEXT PRIMARY KEY,
        tokens {real} NOT NULL,
        stamp {real} NOT NULL
    );
    ALTER TABLE messages ADD COLUMN charged_at {real};
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
    applied = {row[0] for row in await tx.fetchall("SELECT version FROM schema_version")}
    for version, script in enumerate(MIGRATIONS, start=1):
        if version not in applied:
            for statement in statements(script, types):
                await tx.execute(statement)
            await tx.execute("INSERT INTO schema_version VALUES (?)", (version,))
