"""The Store Protocol: everything durable goes through a Store.

Each write method is one transaction: a status change, the report or attempt that
caused it, its events and its counter delta commit together or not at all.
Implementations call `on_events` with what a transaction wrote only after it
committed, so logs never speak of rolled-back work. The records that cross it are
domain values and live in `service.model`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from service.callback_records import CallbackAttempt, CallbackDue, CallbackRecord
from service.model import (
    Account,
    Ambiguity,
    AttemptResult,
    AutoReplyRule,
    Counters,
    Event,
    Gauges,
    InboundDecision,
    InboundFacts,
    InboundRecord,
    InboundResult,
    InboundSms,
    InboxEntry,
    InboxFilter,
    InboxRecord,
    MessageFilter,
    MessageRecord,
    NewMessage,
    NewWebhook,
    PollDue,
    Priority,
    Report,
    ReportOutcome,
    Stats,
    Status,
    Suppression,
    Webhook,
    WebhookAttempt,
    WebhookDelivery,
)
from service.principals import Client, NewKey, Principal
from service.quotas import Charge, Usage

EventSink = Callable[[Sequence[Event]], None]
InboundPlanner = Callable[[InboundFacts], InboundDecision]


class Store(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> bool: ...

    # accounts
    async def create_account(self, account: Account) -> None:
        """Raises Conflict when the name is taken."""
        ...

    async def get_account(self, name: str) -> Account | None: ...

    async def list_accounts(self) -> list[Account]: ...

    async def update_account(self, account: Account) -> None: ...

    async def delete_account(self, name: str) -> bool: ...

    # clients
    async def create_client(self, client: Client, key: NewKey) -> None:
        """Store a client with its first key; raises Conflict when the name is taken."""
        ...

    async def get_client(self, name: str) -> Client | None: ...

    async def list_clients(self) -> list[Client]: ...

    async def update_client(self, client: Client) -> bool:
        """Change a client's settings (not its secret or keys); False when there is none."""
        ...

    async def delete_client(self, name: str) -> bool:
        """Remove the client and its keys; its messages and counters keep its name."""
        ...

    async def add_client_key(self, client: str, key: NewKey) -> bool:
        """False when there is no such client."""
        ...

    async def revoke_client_key(self, client: str, key_id: str) -> bool:
        """False when the client has no such live key."""
        ...

    async def principal_for(self, digest: str) -> Principal | None:
        """Whom the key with this SHA-256 digest acts for: None unless it is a live key
        of an active client."""
        ...

    async def touch_client_keys(self, used: Sequence[tuple[str, str]]) -> None:
        """Record (key id, ISO time) of keys last used; an older time changes nothing."""
        ...

    async def client_usage(self, names: Sequence[str], at: float) -> dict[str, Usage]:
        """What each of these clients used in the day and month holding `at` (epoch
        seconds); one that used nothing in them is left out."""
        ...

    # messages
    async def enqueue(
        self,
        messages: Sequence[NewMessage],
        response: Mapping[str, Any],
        idempotency: tuple[str, str] | None = None,
        charge: Charge | None = None,
    ) -> Mapping[str, Any]:
        """Store new messages and their outbox rows; returns the response to give.

        With an idempotency (key, body hash) already seen, nothing is stored and the
        first response is returned; the same key with another hash raises Conflict.
        With a `charge`, the messages headed for the outbox are first counted against
        the client's rate limit and quotas in the same transaction: RateLimited or
        QuotaExceeded, and nothing is stored, when they would pass one.
        """
        ...

    async def get_message(self, message_id: str) -> MessageRecord | None: ...

    async def message_events(self, message_id: str) -> list[Event]: ...

    async def events_after(self, after: int, limit: int) -> list[Event]:
        """Stored events with an id above `after`, oldest first: a reader's cursor is
        the last id it saw, so it resumes without gaps or repeats."""
        ...

    async def list_messages(
        self, filters: MessageFilter, limit: int, before_seq: int | None
    ) -> list[MessageRecord]: ...

    # outbox
    async def due_messages(
        self, now: float, limit: int, priorities: Sequence[Priority] = tuple(Priority)
    ) -> list[MessageRecord]:
        """Queued messages whose send is due and not claimed: up to `limit` of each of
        `priorities`, high before normal before bulk, each priority oldest first."""
        ...

    async def claim(self, message_ids: Sequence[str], now: float, lease: float) -> list[str]:
        """Mark messages as in flight; returns those this caller won."""
        ...

    async def release(self, message_ids: Sequence[str]) -> None:
        """Give back claims whose requests never went out: the messages are due again,
        their attempts uncounted."""
        ...

    async def expire_claims(self, now: float, ambiguity: Ambiguity | None = None) -> int:
        """Claims past their lease: the process died mid-send, the outcome is unknown."""
        ...

    async def conclude_unresolved(self, now: float, limit: int = 500) -> int:
        """Conclude the sends whose outcome stayed unknown past their time (the
        `Ambiguity` they were recorded with); returns how many were due."""
        ...

    async def expire_unsent(self, now: float, limit: int = 500) -> int:
        """End the unclaimed messages whose validity ran out: `expired`, never sent."""
        ...

    async def cancel(self, message_id: str) -> Status | None:
        """Cancel an unclaimed scheduled or queued message: None when cancelled, else
        the status that forbids it; NotFound when there is no such message."""
        ...

    async def record_attempts(self, results: Sequence[AttemptResult]) -> None: ...

    # polling, for providers that do not push reports
    async def due_polls(self, now: float, limit: int, lease: float) -> list[PollDue]:
        """Polls that are due, each leased to this caller until `now + lease` so that no
        other process polls it meanwhile; `reschedule_poll` ends the lease."""
        ...

    async def reschedule_poll(self, message_id: str, due_at: float | None) -> None:
        """Poll again at `due_at`, or (None) give up polling this message."""
        ...

    # reports and inbound
    async def apply_report(
        self, account: str, report: Report, key: tuple[str, str]
    ) -> ReportOutcome: ...

    # the callback inbox
    async def append_inbox(self, entries: Sequence[InboxEntry]) -> None:
        """Store callbacks to apply later; returns once they are durably committed."""
        ...

    async def apply_inbox(self, limit: int) -> int:
        """Apply up to `limit` stored callbacks, oldest first, in one transaction; how
        many were applied (0: none waited)."""
        ...

    async def replay_inbox(self, ids: Sequence[int]) -> int:
        """Apply stored callbacks again (idempotent); how many were found."""
        ...

    async def prune_inbox(self, before: float) -> int:
        """Forget applied callbacks received before `before` (epoch seconds)."""
        ...

    async def inbox_depth(self) -> tuple[int, float | None]:
        """Callbacks waiting to be applied, and when the oldest of them arrived."""
        ...

    async def list_inbox(
        self, filters: InboxFilter, after: int, limit: int, unmatched_before: float
    ) -> list[InboxRecord]: ...

    async def inbox_ids(
        self, filters: InboxFilter, after: int, limit: int, unmatched_before: float
    ) -> list[int]: ...

    async def receive_inbound(
        self, account: str, inbound: InboundSms, replies_since: str, plan: InboundPlanner
    ) -> InboundResult:
        """Store an inbound message and carry out what `plan` decides about it, in one
        transaction. `replies_since` starts the window that `recent_replies` counts.
        A message whose provider ID is already stored is not planned again."""
        ...

    async def list_inbound(self, limit: int, before_id: int | None) -> list[InboundRecord]: ...

    async def adopt_request_id(
        self, account: str, message_id: str, request_id: str, key: tuple[str, str]
    ) -> bool:
        """Give a message sent inside a callback's answer (TwiML) the ID the provider
        reports it under, once; reports parked for that ID then apply."""
        ...

    # auto-replies and opt-outs
    async def list_rules(self) -> list[AutoReplyRule]: ...

    async def put_rule(self, rule: AutoReplyRule) -> bool:
        """Create or replace the rule of that name; True when it was new."""
        ...

    async def delete_rule(self, name: str) -> bool: ...

    async def suppressed(self, numbers: Sequence[str]) -> set[str]:
        """Those of these E.164 numbers that opted out."""
        ...

    async def list_suppressions(self) -> list[Suppression]: ...

    async def suppress(self, number: str, keyword: str, account: str) -> bool:
        """Put a number on the list by hand; False when it was there already."""
        ...

    async def unsuppress(self, number: str) -> bool: ...

    # counters
    async def stats(self, unmatched_before: str) -> Stats:
        """Counters as kept, with reports still unmatched since before `unmatched_before`."""
        ...

    async def client_counters(self, client: str) -> Counters:
        """The counters kept for one client's messages."""
        ...

    async def derive_counters(self, owner: str = "account") -> dict[str, Counters]:
        """Counters recomputed from the messages table, per account or (owner
        "client") per client, to check the kept ones."""
        ...

    # the web console's hourly chart
    async def final_by_hour(self, since: str) -> list[tuple[str, Status, int]]:
        """(hour as "YYYY-MM-DDTHH" UTC, final status, messages) for the messages that
        reached a final status at or after `since`, oldest hour first."""
        ...

    # webhooks
    async def create_webhook(self, webhook: NewWebhook) -> Webhook:
        """Store a webhook whose deliveries start after the newest stored event."""
        ...

    async def list_webhooks(self) -> list[Webhook]: ...

    async def get_webhook(self, webhook_id: str) -> Webhook | None: ...

    async def delete_webhook(self, webhook_id: str) -> bool:
        """Remove the webhook and its pending deliveries; False when there was none."""
        ...

    async def fan_out_webhooks(self, now: float, limit: int) -> int:
        """Queue a delivery per active webhook for each of the next `limit` events it
        wants, and advance the webhooks' cursors, in one transaction; returns how many
        events were read."""
        ...

    async def claim_webhook_deliveries(
        self, now: float, lease: float, limit: int
    ) -> list[WebhookDelivery]:
        """Due deliveries of active webhooks, leased to this caller until `now + lease`.
        A lease that runs out (its process died) makes the delivery due again."""
        ...

    async def record_webhook_attempt(self, attempt: WebhookAttempt) -> None:
        """Conclude or reschedule a claimed delivery and update its webhook's status."""
        ...

    # per-message status callbacks
    async def claim_status_callbacks(
        self, now: float, lease: float, limit: int, gateway_secret: str
    ) -> list[CallbackDue]:
        """Due status-callback deliveries, at most one per message (its oldest pending
        one), leased to this caller until `now + lease`. Signed with the message's
        client's secret, or `gateway_secret` for an admin send."""
        ...

    async def record_status_callback(self, attempt: CallbackAttempt) -> None:
        """Settle or reschedule a claimed delivery by its answer, and keep the answer;
        a 410 stops the message's callbacks."""
        ...

    async def status_callbacks(self, message_id: str) -> list[CallbackRecord]:
        """The message's status-callback deliveries and their answers, oldest first."""
        ...

    # console sessions
    async def start_session(
        self, session_id: str, token_id: str, expires_at: int, now: int
    ) -> None:
        """Record a signed-in session (dropping expired ones); times in Unix seconds."""
        ...

    async def session_live(self, session_id: str, token_id: str, now: int) -> bool:
        """True while the session was started with that token, is not ended and has
        not expired."""
        ...

    async def end_session(self, session_id: str) -> bool:
        """Sign the session out everywhere; False when it was not live."""
        ...

    # metrics
    async def gauges(self) -> Gauges: ...
