"""The contract between smsgw and a provider module.

A handler is pure translation: it builds `WireRequest`s and reads `WireResponse`s and
`CallbackRequest`s. It never opens a socket, serves HTTP or touches storage, which is
what lets every provider be tested against its wire format alone and lets the
dispatcher own retries and rate limits, and the transport redaction, in one place.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol
from urllib.parse import parse_qsl

from service.errors import CallbackInvalid, Unparseable
from service.model import Account, Balance, InboundSms, RecipientResult, Report, SendBatch
from service.parsing import decode_json


@dataclass(frozen=True, slots=True)
class WireRequest:
    method: str
    url: str
    params: Sequence[tuple[str, str]] = ()
    headers: Mapping[str, str] = field(default_factory=dict)
    json: Any = None
    form: Sequence[tuple[str, str]] | None = None


@dataclass(frozen=True, slots=True)
class WireResponse:
    status_code: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body as JSON, or None when it is not JSON (or not within the limits of
        `service.parsing`)."""
        try:
            return decode_json(self.body)
        except Unparseable:
            return None


@dataclass(frozen=True, slots=True)
class CallbackRequest:
    """A provider's callback as it arrived: GET query or POST body, JSON or form."""

    method: str
    url: str
    """The full public URL the provider called (SMSGW_PUBLIC_URL, path and query)."""
    query: Sequence[tuple[str, str]]
    """Query parameters, without the callback key smsgw added to the URL."""
    headers: Mapping[str, str]
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()

    def json(self) -> Any:
        """The body parsed as JSON; a body that is not JSON is the caller's fault."""
        try:
            return decode_json(self.body)
        except Unparseable as exc:
            raise CallbackInvalid(f"callback {exc.message}", field="body") from exc

    def form(self) -> list[tuple[str, str]]:
        try:
            text = self.body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CallbackInvalid("callback body is not UTF-8") from exc
        return parse_qsl(text, keep_blank_values=True)

    def fields(self) -> dict[str, Any]:
        """Query parameters merged with the body, whichever form the provider chose.

        Providers switch between GET and POST, and between JSON and form bodies, by
        account setting; handlers read one flat mapping and stay out of that.
        """
        merged: dict[str, Any] = dict(self.query)
        if not self.body.strip():
            return merged
        if self.content_type == "application/json" or self.body.lstrip()[:1] in (b"{", b"["):
            parsed = self.json()
            if not isinstance(parsed, dict):
                raise CallbackInvalid("callback JSON must be an object")
            merged.update(parsed)
        else:
            merged.update(self.form())
        return merged


Column = Literal["API key", "Secret key", "Username", "Password"]
"""The console's Gateways table has these four credential columns, older than the
providers whose fields have other names; each credential says which one it shows in."""


@dataclass(frozen=True, slots=True)
class Credential:
    """One credential an account of the provider needs, as the console and the API show it."""

    name: str
    label: str
    column: Column
    secret: bool = False
    """Write-only: masked in the API, scrubbed from stored text."""


# The two credentials of the providers that sign in with a username and a password.
LOGIN = (
    Credential("username", "Username", "Username"),
    Credential("password", "Password", "Password", secret=True),
)
API_KEY = (Credential("api_key", "API key", "API key", secret=True),)


class SendRefused(Exception):
    """Raised by `send_request` when these messages cannot go out on this account
    (a limit of the account's, say): nothing is sent and every message fails."""

    def __init__(self, code: str, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


class ProviderHandler(Protocol):
    """One provider's wire format.

    The poll and balance methods return None where the provider offers no such call.
    Handlers subclass this Protocol, so that the defaults below (a provider without
    signed callbacks, polling or a balance call) are written once.
    """

    name: ClassVar[str]
    display_name: ClassVar[str]
    """The company as the console names it."""
    docs_url: ClassVar[str]
    """Where the provider documents the API this handler speaks ("" for the sandbox)."""
    public_base_url: ClassVar[str]
    """The provider's documented scheme and host; an account's base_url replaces it.

    Callers pass the account's base_url as stored, "" when it has none, and the handler
    falls back to this (with `handlers.wire.resolve_base`), so the rule lives in one place.
    """
    credentials: ClassVar[tuple[Credential, ...]]
    example_account: ClassVar[str]
    """The TOML lines after `credentials` of this provider's account in the example
    gateways file (config/gateways.example.toml); "" keeps the provider out of it."""
    max_batch: ClassVar[int]
    """Recipients one send request may carry; 1 means loop only."""
    max_text_chars: ClassVar[int]
    shares_request_ids: ClassVar[bool] = False
    """True when one request ID covers many recipients, so reports match by recipient too."""
    pushes_reports: ClassVar[bool] = True
    """False when delivery status can only be polled; the poller then asks for it."""
    signed_headers: ClassVar[tuple[str, ...]] = ()
    """The headers (lower case) `authenticate` reads: kept with a stored callback."""
    native_test_mode: ClassVar[bool] = False
    """True when the API itself validates without sending (1609SMS `test=yes`); for
    the others an account in test mode is a dry run that never leaves smsgw."""

    @property
    def credential_fields(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.credentials)

    @property
    def secret_fields(self) -> tuple[str, ...]:
        """Credentials that are write-only: masked in the API, scrubbed from stored text."""
        return tuple(c.name for c in self.credentials if c.secret)

    def wire_secrets(self, account: Account) -> tuple[str, ...]:
        """Values the provider takes in place of a secret credential (a digest of it),
        which authenticate like it and so are scrubbed like it."""
        return ()

    def send_request(self, account: Account, batch: SendBatch) -> WireRequest:
        """Raises SendRefused when the batch must not be sent at all."""
        ...

    def parse_send_response(
        self, account: Account, batch: SendBatch, response: WireResponse
    ) -> list[RecipientResult]:
        """One result per message of the batch, in the batch's order."""
        ...

    def authenticate(self, account: Account, callback: CallbackRequest) -> None:
        """Raise Forbidden when the provider signs its callbacks and this one does not verify.

        Runs after the URL's key was checked; providers without signatures do nothing.
        """
        return None

    def parse_dlr(self, account: Account, callback: CallbackRequest) -> list[Report]:
        """Raises CallbackInvalid for a callback the provider would never send."""
        ...

    def parse_inbound(self, account: Account, callback: CallbackRequest) -> list[InboundSms]: ...

    def inbound_answer(
        self, account: Account, reply: str | None, status_url: str = ""
    ) -> WireResponse | None:
        """The body the provider expects in answer to an inbound callback (Twilio: TwiML,
        carrying `reply` when an auto-reply applies, whose delivery status the provider
        then reports to `status_url`); None for a plain JSON acknowledgement, in which
        case an auto-reply goes out through the outbox like any message."""
        return None

    def poll_request(
        self, account: Account, base_url: str, request_ids: Sequence[str]
    ) -> WireRequest | None:
        return None

    def parse_poll_response(
        self, account: Account, request_ids: Sequence[str], response: WireResponse
    ) -> list[Report]:
        """Reports from a poll answer; `request_ids` are the IDs the poll asked about,
        for providers whose answer does not repeat them.

        An error status or an answer that is not a JSON object teaches nothing this
        time, so it gives no report and the poller asks again later. Providers that
        answer polls in JSON read the object in `poll_reports`; the others override this.
        """
        body = response.json()
        if not 200 <= response.status_code < 300 or not isinstance(body, dict):
            return []
        return self.poll_reports(account, request_ids, body)

    def poll_reports(
        self, account: Account, request_ids: Sequence[str], body: dict[str, Any]
    ) -> list[Report]:
        """Reports from a successful poll answer's JSON object."""
        return []

    def balance_request(self, account: Account, base_url: str) -> WireRequest | None:
        return None

    def parse_balance(self, account: Account, response: WireResponse) -> Balance: ...
