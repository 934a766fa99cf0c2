"""The normalized world every provider handler translates to and from.

These are plain values: no I/O, no rules. The ranking and reconciliation rules
that give statuses their meaning live in `service.reconcile`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SUBMITTED = "submitted"
    ENROUTE = "enroute"
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    EXPIRED = "expired"
    REJECTED = "rejected"
    FAILED = "failed"


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
