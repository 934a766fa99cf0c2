"""Console sign-in: signed session cookies, CSRF tokens, and the middleware that needs them.

The cookie holds an expiry, the id of the API token that signed in and a random nonce,
signed with HMAC-SHA256 under a key derived from that token. The store holds each
session signed in and not yet signed out (`Store.start_session`), under a hash of its
nonce: a page needs both a valid signature and a live row. So signing out ends the
session in every process sharing the store, even for a copied cookie, and removing a
token from the settings ends the sessions it opened, as its key is gone, while other
tokens' sessions go on. The cookie never holds a token, only what its key signed. A
session's CSRF token is the HMAC of its nonce, so forms carry it without the server
remembering it.

A failed sign-in is counted with the API's failed tokens from that address
(service.ratelimit.FailedAuthentications); past the limit the login page says so, 429.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from urllib.parse import parse_qsl, quote

from starlette._utils import get_route_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.middleware import matching_token
from service.parsing import int_of
from service.runtime import Runtime
from service.store import Store

COOKIE = "smsgw_session"
PREFIX = "/console"
LOGIN = f"{PREFIX}/login"
CSRF_FIELD = "csrf"
_PUBLIC = ("/login", "/static/")
# Pages hold phone numbers and message texts: no caching, no framing, no foreign code.
SECURITY_HEADERS = (
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
        b"form-action 'self'; frame-ancestors 'none'",
    ),
)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass(frozen=True, slots=True)
class Session:
    nonce: str
    expires: int
    token_id: str
    """Names the API token that signed in, without revealing it."""
    csrf: str

    @property
    def scope(self) -> str:
        """Names this session's idempotency keys without revealing its nonce."""
        return "web-" + hashlib.sha256(self.nonce.encode()).hexdigest()[:16]

    @property
    def id(self) -> str:
        """The store's name for this session: a hash, so the store holds no nonce."""
        return hashlib.sha256(f"session|{self.nonce}".encode()).hexdigest()


class SessionSigner:
    def __init__(
        self, tokens: tuple[str, ...], ttl: float, clock: Callable[[], float] = time.time
    ) -> None:
        self._tokens = [t.encode() for t in tokens]
        keys = [
            hmac.new(t, b"smsgw console session v2", hashlib.sha256).digest() for t in self._tokens
        ]
        # A token's id is public (it is in the cookie); its key is not.
        self._ids = [_b64(hmac.new(k, b"token id", hashlib.sha256).digest()[:12]) for k in keys]
        self._keys = dict(zip(self._ids, keys, strict=True))
        self.ttl = int(ttl)
        self._clock = clock

    def now(self) -> int:
        return int(self._clock())

    def token_id(self, given: str) -> str | None:
        """The id of the API token given, or None when it is none of them."""
        index = matching_token(given.encode(), self._tokens)
        return None if index is None else self._ids[index]

    def _sign(self, key: bytes, purpose: str, value: str) -> str:
        return _b64(hmac.new(key, f"{purpose}|{value}".encode(), hashlib.sha256).digest())

    def issue(self, token_id: str) -> tuple[str, Session]:
        """A new session for the token of that id, and the cookie value that carries it."""
        nonce = secrets.token_urlsafe(18)
        expires = self.now() + self.ttl
        payload = f"{expires}.{token_id}.{nonce}"
        signature = self._sign(self._keys[token_id], "session", payload)
        return f"{payload}.{signature}", self._session(nonce, expires, token_id)

    def _session(self, nonce: str, expires: int, token_id: str) -> Session:
        return Session(nonce, expires, token_id, self._sign(self._keys[token_id], "csrf", nonce))

    def read(self, cookie: str | None) -> Session | None:
        """The session a cookie carries, or None when it is absent, forged, expired or
        signed with a token no longer configured. Whether it is still live is the
        store's to say (`live_session`)."""
        if not cookie:
            return None
        payload, _, signature = cookie.rpartition(".")
        expires, _, rest = payload.partition(".")
        token_id, _, nonce = rest.partition(".")
        key = self._keys.get(token_id)
        if key is None or not nonce:
            return None
        if not hmac.compare_digest(
            signature.encode(), self._sign(key, "session", payload).encode()
        ):
            return None
        until = int_of(expires)
        if until is None or until <= self._clock():
            return None
        return self._session(nonce, until, token_id)

    @staticmethod
    def csrf_ok(session: Session, given: str) -> bool:
        return hmac.compare_digest(given.encode(), session.csrf.encode())


def _store(scope: Scope) -> Store:
    runtime: Runtime = scope["app"].state.runtime
    return runtime.store


async def live_session(signer: SessionSigner, scope: Scope) -> Session | None:
    """The session of this request's cookie when its signature holds and the store
    says it was not signed out."""
    session = signer.read(cookie_of(scope))
    if session is None:
        return None
    if not await _store(scope).session_live(session.id, session.token_id, signer.now()):
        return None
    return session


async def start_session(signer: SessionSigner, scope: Scope, token_id: str) -> str:
    """A new session, recorded in the store; returns its cookie value."""
    cookie, session = signer.issue(token_id)
    await _store(scope).start_session(session.id, token_id, session.expires, signer.now())
    return cookie


async def end_session(scope: Scope, session: Session) -> None:
    await _store(scope).end_session(session.id)


def cookie_of(scope: Scope) -> str | None:
    header = dict(scope["headers"]).get(b"cookie")
    if header is None:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header.decode("latin-1"))
    except CookieError:  # a malformed Cookie header is simply no session
        return None
    morsel = jar.get(COOKIE)
    return morsel.value if morsel is not None else None


def safe_next(target: str) -> str:
    """Where to go after signing in: only a console page, never another site."""
    if target.startswith(f"{PREFIX}/") and not target.startswith("//") and "\\" not in target:
        return target
    return f"{PREFIX}/"


class ConsoleAuth:
    """Every console page but sign-in and static files needs a session; every POST also
    needs the session's CSRF token in its form, checked before the page sees the request.

    The parsed form is left in `scope["state"]["console_form"]` and the body replayed,
    so a page reads its form once, already checked.
    """

    def __init__(
        self, app: ASGIApp, signer: SessionSigner, forbidden: Callable[[Session], bytes]
    ) -> None:
        self.app = app
        self._signer = signer
        self._forbidden = forbidden

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def secured_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        state = scope.setdefault("state", {})
        if get_route_path(scope).startswith(_PUBLIC):
            await self.app(scope, receive, secured_send)
            return
        session = await live_session(self._signer, scope)
        if session is None:
            await _redirect_to_login(scope, secured_send)
            return
        state["console_session"] = session
        if scope["method"] == "POST":
            body = await _read_body(receive)
            form = _form(scope, body)
            if form is None or not self._signer.csrf_ok(session, _first(form, CSRF_FIELD)):
                await _send_html(secured_send, 403, self._forbidden(session))
                return
            state["console_form"] = form
            receive = _replay(body, receive)
        await self.app(scope, receive, secured_send)


def _first(form: list[tuple[str, str]], key: str) -> str:
    return next((value for name, value in form if name == key), "")


def _form(scope: Scope, body: bytes) -> list[tuple[str, str]] | None:
    content_type = dict(scope["headers"]).get(b"content-type", b"").split(b";")[0].strip()
    if content_type != b"application/x-www-form-urlencoded":
        return None
    try:
        # No browser sends U+0000 and PostgreSQL cannot store it in text.
        text = body.decode("utf-8").replace("%00", "%EF%BF%BD").replace("\x00", "\ufffd")
        return parse_qsl(text, keep_blank_values=True)
    except (UnicodeDecodeError, ValueError):
        return None


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


async def _redirect_to_login(scope: Scope, send: Send) -> None:
    target = scope["path"] + (f"?{scope['query_string'].decode()}" if scope["query_string"] else "")
    location = f"{LOGIN}?next={quote(target, safe='')}"
    await send(
        {
            "type": "http.response.start",
            "status": 303,
            "headers": [(b"location", location.encode()), (b"content-length", b"0")],
        }
    )
    await send({"type": "http.response.body", "body": b""})


async def _send_html(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/html; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
