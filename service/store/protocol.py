"""The Store Protocol and the records that cross it.

Everything durable goes through a Store. Each write method is one transaction: a
status change, the report or attempt that caused it, its events and its counter
delta commit together or not at all. Implementations call `on_events` with what a
transaction wrote only after it committed, so logs never speak of rolled-back work.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from service.model import Account, InboundSms, Report, Status
from service.reconcile import Counters


@dataclass(frozen=True, slots=True)
class Event:
    event: str
    ts: str
    message_id: str = ""
    account: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)
    id: int = 0


EventSink = Callable[[Sequence[Event]], None]


@dataclass(frozen=True, slots=True)
class NewMessage:
    id: str
    account: str
    to: str
    text: str
    sender: str
    encoding: str
    segments: int
    client_ref: str = ""
    routed: bool = False
    """True when smsgw chose the account by priority, so failover may choose another."""
    inbound_id: int | None = None
    """The inbound message this auto-reply answers."""
    opted_out: bool = False
    """The recipient is on the suppression list: stored as failed, never submitted."""


@dataclass(frozen=True, slots=True)
class MessageRecord:
    id: str
    seq: int
    account: str
    to: str
    text: str
    sender: str
    encoding: str
    segments: int
    status: Status
    client_ref: str
    request_id: str
    error_code: str
    error_text: str
    http_status: int | None
    http_response: str
    attempts: int
    created_at: str
    updated_at: str
    tried: tuple[str, ...] = ()
    """Accounts this message failed over from."""
    routed: bool = False


@dataclass(frozen=True, slots=True)
class InboundRecord:
    id: int
    account: str
    sender: str
    recipient: str
    text: str
    provider_id: str
    received_at: str
    rule: str = ""
    """The auto-reply rule (or "opt-out" / "opt-in") that answered."""
    reply_note: str = ""
    """Why no reply went out: own_number, auto_reply_loop, opted_out, rate_limited..."""
    reply: MessageRecord | None = None


@dataclass(frozen=True, slots=True)
class AutoReplyRule:
    name: str
    position: int
    """Rules are tried in ascending position, then by name; the first match answers."""
    kind: str
    """keyword (the first word, any case), regex (searched in the text) or default."""
    pattern: str
    reply: str
    """A template: {from}, {to}, {text} and {keyword} are replaced."""
    account: str = ""
    """Only messages received on this account; empty: any."""
    number: str = ""
    """Only messages received on this number; empty: any."""
    active: bool = True


@dataclass(frozen=True, slots=True)
class InboundFacts:
    """What the store knows about a new inbound message's sender, read in its transaction."""

    rules: Sequence[AutoReplyRule]
    suppressed: bool
    own_numbers: frozenset[str]
    """recipient_key() of every sender ID our accounts send with."""
    recent_replies: int
    """Auto-replies sent to this sender within the rate window."""
    echoes_auto_reply: bool
    """The text is one of our own recent auto-replies: another machine is answering us."""


@dataclass(frozen=True, slots=True)
class InboundDecision:
    suppress: bool | None = None
    """True: add the sender to the suppression list; False: remove; None: leave."""
    reply: NewMessage | None = None
    inline: bool = False
    """The reply travels in the callback's answer (TwiML), not through the outbox."""
    rule: str = ""
    note: str = ""


InboundPlanner = Callable[[InboundFacts], InboundDecision]


@dataclass(frozen=True, slots=True)
class InboundResult:
    id: int
    """0 when the provider's ID was already stored: a retried callback."""
    decision: InboundDecision


@dataclass(frozen=True, slots=True)
class Suppression:
    number: str
    keyword: str
    account: str
    created_at: str


class Decision(StrEnum):
    ACCEPTED = "accepted"
    FAILED = "failed"
    RETRY = "retry"
    UNKNOWN = "unknown"
    """The request may have reached the provider; resending could deliver twice."""


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """What the dispatcher concluded for one message after one send attempt."""

    message_id: str
    decision: Decision
    status: Status = Status.SUBMITTED
    request_ids: tuple[str, ...] = ()
    keys: tuple[tuple[str, str], ...] = ()
    """The match key of each request ID (see reconcile.match_key)."""
    error_code: str = ""
    error_text: str = ""
    http_status: int | None = None
    http_response: str = ""
    retry_at: float = 0.0
    """RETRY: when the next attempt is due."""
    new_account: str = ""
    """RETRY: fail over to this account."""
    new_sender: str = ""
    """RETRY: send with this sender ID instead (the account's fallback)."""
    poll_at: float | None = None
    """ACCEPTED: when to first poll for delivery status; None when reports are pushed."""


@dataclass(frozen=True, slots=True)
class PollDue:
    message_id: str
    account: str
    request_ids: tuple[str, ...]
    tries: int
    since: float


class ReportOutcome(StrEnum):
    MATCHED = "matched"
    UNMATCHED = "unmatched"
    DUPLICATE = "duplicate"


@dataclass(frozen=True, slots=True)
class Stats:
    total: Counters
    accounts: Mapping[str, Counters]
    unmatched: Mapping[str, int]

    def as_body(self) -> dict[str, Any]:
        def one(counters: Counters, unmatched: int) -> dict[str, int]:
            return {**counters.as_dict(), "unmatched": unmatched}

        return {
            "total": one(self.total, sum(self.unmatched.values())),
            "accounts": {
                name: one(self.accounts.get(name, Counters()), self.unmatched.get(name, 0))
                for name in sorted(set(self.accounts) | set(self.unmatched))
            },
        }


@dataclass(frozen=True, slots=True)
class Gauges:
    """Stored state that /metrics reads at scrape time."""

    messages: Mapping[tuple[str, str], int]
    """(account, status) -> number of messages."""
    outbox: int
    """Outbox rows: queued, waiting to retry, or in flight."""
    webhook_backlog: int
    """Webhook deliveries not yet acknowledged."""


@dataclass(frozen=True, slots=True)
class MessageFilter:
    status: str = ""
    account: str = ""
    to: str = ""


@dataclass(frozen=True, slots=True)
class NewWebhook:
    id: str
    url: str
    secret: str
    events: tuple[str, ...]
    """Event names and `prefix.*` globs; empty (or `*`) means every event."""
    description: str = ""


@dataclass(frozen=True, slots=True)
class Webhook:
    id: str
    url: str
    secret: str
    events: tuple[str, ...]
    description: str
    active: bool
    cursor: int
    """The last event id fanned out to this webhook."""
    last_status: int | None
    last_error: str
    last_attempt_at: str
    failures: int
    """Consecutive failed attempts; a delivery resets it."""
    delivered: int
    created_at: str
    pending: int = 0
    """Deliveries waiting for their first or next attempt."""

    def wants(self, event: str) -> bool:
        return not self.events or any(
            pattern == "*"
            or pattern == event
            or (pattern.endswith(".*") and event.startswith(pattern[:-1]))
            for pattern in self.events
        )


@dataclass(frozen=True, slots=True)
class WebhookDelivery:
    """One event claimed for one attempt to one webhook."""

    webhook_id: str
    url: str
    secret: str
    event: Event
    attempts: int
    """Attempts made, this one included."""
    first_at: float
    """When the event was fanned out: the age `webhooks.give_up` is measured from."""


class WebhookOutcome(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    GAVE_UP = "gave_up"
    GONE = "gone"
    """The receiver answered 410: the webhook is deactivated and its backlog dropped."""


@dataclass(frozen=True, slots=True)
class WebhookAttempt:
    webhook_id: str
    event_id: int
    outcome: WebhookOutcome
    http_status: int | None
    error: str = ""
    retry_at: float = 0.0
    """RETRY: when the next attempt is due."""


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

    # messages
    async def enqueue(
        self,
        messages: Sequence[NewMessage],
        response: Mapping[str, Any],
        idempotency: tuple[str, str] | None = None,
    ) -> Mapping[str, Any]:
        """Store new messages and their outbox rows; returns the response to give.

        With an idempotency (key, body hash) already seen, nothing is stored and the
        first response is returned; the same key with another hash raises Conflict.
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
    async def due_messages(self, now: float, limit: int) -> list[MessageRecord]:
        """Queued messages whose send is due and not claimed, oldest first."""
        ...

    async def claim(self, message_ids: Sequence[str], now: float, lease: float) -> list[str]:
        """Mark messages as in flight; returns those this caller won."""
        ...

    async def expire_claims(self, now: float) -> int:
        """Claims past their lease: the process died mid-send, the outcome is unknown."""
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

    async def derive_counters(self) -> dict[str, Counters]:
        """Counters recomputed from the messages table, to check the kept ones."""
        ...

    # web console (#5)
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

    # metrics
    async def gauges(self) -> Gauges: ...
