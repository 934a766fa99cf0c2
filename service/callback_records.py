"""Records of per-message status callbacks: a delivery due, what one attempt came to,
and a message's deliveries as its views show them. Plain values, no I/O."""

from __future__ import annotations

from dataclasses import dataclass

from service.model import WebhookOutcome

FINAL_ONLY, EVERY_CHANGE = "final", "all"
CALLBACK_EVENTS = (FINAL_ONLY, EVERY_CHANGE)
"""What a message may ask for: its final status only, or every status it takes."""

PENDING, DELIVERED, GAVE_UP, STOPPED = "pending", "delivered", "gave_up", "stopped"
"""A delivery's state: still to go, delivered, dropped after `webhooks.give_up`, or
dropped because the receiver answered 410."""


def webhook_id_of(seq: int) -> str:
    """A status change's `webhook-id`: stable across retries, so the receiver can
    drop a repeat."""
    return f"msgst_{seq}"


@dataclass(frozen=True, slots=True)
class CallbackDue:
    """A claimed delivery of one status change."""

    seq: int
    message_id: str
    url: str
    secret: str
    """The client's webhook secret, or the gateway's for an admin send; '' if none."""
    body: bytes
    attempts: int
    """Counting this one."""
    first_at: float

    @property
    def webhook_id(self) -> str:
        return webhook_id_of(self.seq)


@dataclass(frozen=True, slots=True)
class CallbackAttempt:
    seq: int
    message_id: str
    outcome: WebhookOutcome
    http_status: int | None
    error: str = ""
    retry_at: float = 0.0
    """RETRY: when the next attempt is due."""


@dataclass(frozen=True, slots=True)
class CallbackTry:
    at: str
    http_status: int | None
    error: str
    outcome: str


@dataclass(frozen=True, slots=True)
class CallbackRecord:
    """One status change's delivery with the answers it got, oldest first."""

    seq: int
    status: str
    state: str
    next_attempt_at: float | None
    tries: tuple[CallbackTry, ...]

    @property
    def webhook_id(self) -> str:
        return webhook_id_of(self.seq)
