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
class MessageFilter:
    status: str = ""
    account: str = ""
    to: str = ""


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
    async def due_polls(self, now: float, limit: int) -> list[PollDue]: ...

    async def reschedule_poll(self, message_id: str, due_at: float | None) -> None:
        """Poll again at `due_at`, or (None) give up polling this message."""
        ...

    # reports and inbound
    async def apply_report(
        self, account: str, report: Report, key: tuple[str, str]
    ) -> ReportOutcome: ...

    async def add_inbound(self, account: str, inbound: InboundSms) -> bool:
        """False when the provider's ID was already stored."""
        ...

    async def list_inbound(self, limit: int, before_id: int | None) -> list[InboundRecord]: ...

    # counters
    async def stats(self, unmatched_before: str) -> Stats:
        """Counters as kept, with reports still unmatched since before `unmatched_before`."""
        ...

    async def derive_counters(self) -> dict[str, Counters]:
        """Counters recomputed from the messages table, to check the kept ones."""
        ...
