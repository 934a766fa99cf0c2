"""Who a request acts for: clients, their API keys, and the principal a bearer token
resolves to. Plain records, no I/O."""

from __future__ import annotations

from dataclasses import dataclass

SEND, READ, ADMIN = "send", "read", "admin"
SCOPES = (SEND, READ, ADMIN)
"""What a client's key may do: send messages, read its own messages and counters,
administer the gateway."""


@dataclass(frozen=True, slots=True)
class ClientKey:
    """One API key of a client, as it is shown: never the key or its hash."""

    id: str
    name: str
    created_at: str
    last_used_at: str | None = None
    revoked_at: str | None = None


@dataclass(frozen=True, slots=True)
class NewKey:
    """A key about to be stored: only the hash of the key itself is kept."""

    id: str
    name: str
    digest: str


@dataclass(frozen=True, slots=True)
class Client:
    name: str
    active: bool = True
    scopes: tuple[str, ...] = (SEND, READ)
    accounts: tuple[str, ...] | None = None
    """The provider accounts it may send with; None: every account."""
    rate_per_second: float | None = None
    quota_day: int | None = None
    quota_month: int | None = None
    callback_url: str = ""
    webhook_secret: str = ""
    created_at: str = ""
    keys: tuple[ClientKey, ...] = ()


@dataclass(frozen=True, slots=True)
class Principal:
    """Whom a request acts for: an admin token (client None) or a client's key."""

    client: str | None
    scopes: frozenset[str]
    accounts: tuple[str, ...] | None = None
    key_id: str = ""

    @property
    def is_admin(self) -> bool:
        return self.client is None


ADMIN_PRINCIPAL = Principal(None, frozenset(SCOPES))
"""The holder of an SMSGW_API_TOKENS token: everything, as before clients existed."""


def required_scope(method: str, path: str) -> str:
    """The scope a request needs: `send` to send or cancel, `read` to read messages,
    counters and events, `admin` for everything else (accounts, clients, webhooks,
    rules, reports, metrics...)."""
    if path == "/v1/messages" and method == "POST":
        return SEND
    if method == "DELETE" and path.startswith("/v1/messages/"):
        return SEND
    reads = ("/v1/messages", "/v1/stats", "/v1/events")
    if method in ("GET", "HEAD") and (path in reads or path.startswith(_READ_PREFIXES)):
        return READ
    return ADMIN


_READ_PREFIXES = ("/v1/messages/", "/v1/events/")
PRINCIPAL = "smsgw.principal"
"""Where the bearer middleware leaves the request's Principal in the ASGI scope."""
