"""The domain records: what handlers translate to and from, and what crosses the Store.

These are plain values: no I/O, no rules. The ranking and reconciliation rules
that give statuses their meaning live in `service.reconcile`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    SCHEDULED = "scheduled"
    """Waiting for its `send_at`; not yet due to be sent."""
    QUEUED = "queued"
    SENDING = "sending"
    SUBMITTED = "submitted"
    ENROUTE = "enroute"
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    EXPIRED = "expired"
    REJECTED = "rejected"
    FAILED = "failed"
    CANCELLED = "cancelled"
    """Withdrawn by the client before it was claimed for sending; never submitted."""


class Priority(StrEnum):
    """A message's lane in the outbox: high goes first, bulk yields a share to normal."""

    HIGH = "high"
    NORMAL = "normal"
    BULK = "bulk"

    @property
    def lane(self) -> int:
        """The outbox's sort key: lower lanes are read and sent first."""
        return _LANES[self]


_LANES = {Priority.HIGH: 0, Priority.NORMAL: 1, Priority.BULK: 2}


OPTED_OUT = "opted_out"
"""The error code of a message to a number on the suppression list: never submitted."""
OPTED_OUT_TEXT = "the recipient opted out (STOP); nothing was sent"


class Outcome(StrEnum):
    """What a provider's answer to a send request means for one recipient."""

    ACCEPTED = "accepted"
    """The provider took the message; request IDs are known."""
    REFUSED = "refused"
    """The provider refused this message for good (bad number, bad text...)."""
    ACCOUNT_ERROR = "account_error"
    """The account cannot send now (credentials, credit, blocked); another account may."""
    SENDER_REJECTED = "sender_rejected"
    """The sender ID was refused; the fallback sender may succeed."""
    TRANSIENT = "transient"
    """The provider asked us to try again later; the message was not taken."""
    UNKNOWN = "unknown"
    """The provider itself cannot say whether it took the message; never resent."""
    VALIDATED = "validated"
    """Test mode: the provider checked the request and sent nothing."""


@dataclass(frozen=True, slots=True)
class Account:
    """A configured gateway account, as a handler sees it."""

    name: str
    provider: str
    credentials: Mapping[str, str] = field(default_factory=dict)
    sender: str = ""
    fallback_sender: str = ""
    active: bool = True
    pattern: str = "batch"
    priority: int = 100
    base_url: str = ""
    options: Mapping[str, Any] = field(default_factory=dict)
    callback_secret: str = ""
    description: str = ""
    logo_url: str = ""
    signup_url: str = ""


@dataclass(frozen=True, slots=True)
class OutgoingSms:
    message_id: str
    to: str
    """E.164 with the leading '+'."""
    text: str
    sender: str
    encoding: str
    segments: int
    validity: int | None = None
    """Whole seconds the message stays valid from the moment of the request, for
    providers that take a validity period; None: the account's own setting."""


@dataclass(frozen=True, slots=True)
class SendBatch:
    """Messages that go out in one provider request.

    With more than one message they share text and sender (the batch pattern).
    """

    messages: tuple[OutgoingSms, ...]
    base_url: str
    """Scheme, host and port to use in place of the provider's public host."""
    dlr_url: str
    """Where the provider should push delivery reports, for APIs that take it per request."""


@dataclass(frozen=True, slots=True)
class RecipientResult:
    """One message's outcome of a send request, in the order of `SendBatch.messages`."""

    outcome: Outcome
    request_ids: tuple[str, ...] = ()
    """One per part when the provider numbers parts, else one for the whole message."""
    status: Status = Status.SUBMITTED
    error_code: str = ""
    error_text: str = ""
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class Report:
    """A delivery report, normalized, with the provider's own code and text kept."""

    request_id: str
    status: Status
    recipient: str = ""
    error_code: str = ""
    error_text: str = ""
    reference: str = ""
    """Our message ID, where the provider echoes one we gave it with the send; it finds
    a message whose send answer was lost (see `Ambiguity`)."""


@dataclass(frozen=True, slots=True)
class KeyedReport:
    """A report with the key it is matched and deduplicated by (`reconcile.match_key`)."""

    report: Report
    key: tuple[str, str]


@dataclass(frozen=True, slots=True)
class RawCallback:
    """A provider's callback as it came, without the URL's key or any credential."""

    method: str
    content_type: str = ""
    query: str = ""
    """The query string without smsgw's `key`."""
    headers: Mapping[str, str] = field(default_factory=dict)
    """The headers a provider's signature is read from."""
    body: str = ""


@dataclass(frozen=True, slots=True)
class InboxEntry:
    """A delivery-report callback, authenticated and parsed, as the inbox keeps it."""

    account: str
    reports: tuple[KeyedReport, ...]
    callback: RawCallback
    received_at: float
    reply_ref: str = ""
    """The auto-reply a TwiML answer sent, whose status this callback reports."""


class InboxState(StrEnum):
    PENDING = "pending"
    """Stored, not yet applied."""
    APPLIED = "applied"
    """Every report of it found its message (or repeated one already kept)."""
    PARKED = "parked"
    """A report of it waits for its message's send answer."""
    UNMATCHED = "unmatched"
    """A report of it has waited longer than `dlr.unmatched_ttl`."""


@dataclass(frozen=True, slots=True)
class StoredReport:
    report: Report
    outcome: str
    """pending, matched, parked, unmatched or duplicate."""
    message_id: str = ""


@dataclass(frozen=True, slots=True)
class InboxRecord:
    id: int
    account: str
    received_at: float
    applied_at: float | None
    state: InboxState
    callback: RawCallback
    reports: tuple[StoredReport, ...]


@dataclass(frozen=True, slots=True)
class InboxFilter:
    account: str = ""
    state: InboxState | None = None
    since: float | None = None
    until: float | None = None
    ids: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class InboundSms:
    sender: str
    recipient: str
    text: str
    provider_id: str = ""


@dataclass(frozen=True, slots=True)
class Balance:
    amount: float
    currency: str = ""

    def __post_init__(self) -> None:
        # A provider's "1e999" or "NaN" reads as a float, but is no balance and no JSON.
        if not math.isfinite(self.amount):
            raise ValueError(f"a balance must be a finite number, not {self.amount}")


@dataclass(frozen=True, slots=True)
class Counters:
    requests: int = 0
    accepted: int = 0
    failed: int = 0
    delivered: int = 0
    undelivered: int = 0
    pending: int = 0
    cancelled: int = 0

    def __add__(self, other: Counters) -> Counters:
        return Counters(*(a + b for a, b in zip(self.as_tuple(), other.as_tuple(), strict=True)))

    def __sub__(self, other: Counters) -> Counters:
        return Counters(*(a - b for a, b in zip(self.as_tuple(), other.as_tuple(), strict=True)))

    def __mul__(self, n: int) -> Counters:
        return Counters(*(a * n for a in self.as_tuple()))

    def as_tuple(self) -> tuple[int, ...]:
        # Spelled out: every counter change of every report goes through here.
        return (
            self.requests,
            self.accepted,
            self.failed,
            self.delivered,
            self.undelivered,
            self.pending,
            self.cancelled,
        )

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def is_zero(self) -> bool:
        return not any(self.as_tuple())


@dataclass(frozen=True, slots=True)
class Event:
    event: str
    ts: str
    message_id: str = ""
    account: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)
    id: int = 0


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
    client: str | None = None
    """The client whose key sent it; None: an admin token."""
    send_at: float | None = None
    """Epoch seconds: stored `scheduled` and sent at this moment, not before."""
    expires_at: float | None = None
    """Epoch seconds: not submitted by then, the message ends `expired`, never sent."""
    callback_url: str | None = None
    """Where its status changes are POSTed; None: the client's default, if any."""
    callback_events: str = "final"
    """Which status changes: `final` or `all`."""
    priority: Priority = Priority.NORMAL


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
    client: str | None = None
    send_at: float | None = None
    expires_at: float | None = None
    callback_url: str = ""
    callback_events: str = "final"
    callback_stopped_at: str | None = None
    """When the receiver answered 410: no status change is POSTed after it."""
    priority: Priority = Priority.NORMAL


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
class Ambiguity:
    """How long a send whose outcome is unknown waits to be resolved (settings
    `[ambiguous]`): until `conclude_after` seconds without a report conclude it, and for
    `match_window` seconds a report without our reference may find it by recipient."""

    conclude_after: float = 86400.0
    match_window: float = 259200.0


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
    requested: bool = False
    """A request went to the provider (or may have): the message's attempts count it."""
    ambiguity: Ambiguity = Ambiguity()
    """UNKNOWN: how long the message waits for a report before it is concluded."""


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
    clients: Mapping[str, Counters] = field(default_factory=dict)
    """Counters of the messages each client's keys sent (the rest were sent by admins)."""

    def as_body(self) -> dict[str, Any]:
        def one(counters: Counters, unmatched: int) -> dict[str, int]:
            return {**counters.as_dict(), "unmatched": unmatched}

        return {
            "total": one(self.total, sum(self.unmatched.values())),
            "accounts": {
                name: one(self.accounts.get(name, Counters()), self.unmatched.get(name, 0))
                for name in sorted(set(self.accounts) | set(self.unmatched))
            },
            "clients": {name: self.clients[name].as_dict() for name in sorted(self.clients)},
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
    inbox_depth: int = 0
    """Callbacks stored and not yet applied."""
    inbox_oldest: float | None = None
    """When the oldest of them arrived (epoch seconds)."""


@dataclass(frozen=True, slots=True)
class MessageFilter:
    status: str = ""
    account: str = ""
    to: str = ""
    client: str = ""


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
