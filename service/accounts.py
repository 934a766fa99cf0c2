"""Gateway accounts: validation of what clients send, their public view, and a cache.

Secrets are write-only: the public view masks every credential the provider's
handler lists as secret, and a PATCH that sends the mask back keeps the old value.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
import tomllib
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from handlers import HANDLERS, handler_for
from handlers.base import ProviderHandler
from service import bounds, parsing
from service.errors import Conflict, NotFound, SettingsError, Unparseable, ValidationFailed
from service.model import Account
from service.redact import Redactor
from service.store import Store
from service.validation import json_object

MASK = "********"
_FIELDS = {
    "logo_url",
    "signup_url",
    "name",
    "provider",
    "credentials",
    "sender",
    "fallback_sender",
    "active",
    "pattern",
    "priority",
    "base_url",
    "options",
    "description",
}


def new_callback_secret() -> str:
    return secrets.token_urlsafe(24)


def account_from_body(body: Any, existing: Account | None = None) -> Account:
    """An Account from a POST body, or from a PATCH body applied to `existing`."""
    body = json_object(body, _FIELDS)
    base = existing or Account(name="", provider="", callback_secret=new_callback_secret())
    name = (
        _text(body, "name", base.name, limit=bounds.ACCOUNT_NAME) if existing is None else base.name
    )
    if (
        not name
        or name != name.strip()
        or any(ch in name for ch in "/?#%\\")
        or not (name.isprintable())
    ):
        raise ValidationFailed(
            "name must be 1-64 printable characters without / ? # % \\", field="name"
        )
    provider = _text(body, "provider", base.provider, limit=bounds.PROVIDER_NAME)
    if provider not in HANDLERS:
        raise ValidationFailed(
            f"provider must be one of {', '.join(sorted(HANDLERS))}", field="provider"
        )
    handler = handler_for(provider)
    pattern = _text(body, "pattern", base.pattern if existing else "", limit=8) or (
        "batch" if handler.max_batch > 1 else "loop"
    )
    if pattern not in ("batch", "loop"):
        raise ValidationFailed("pattern must be batch or loop", field="pattern")
    if pattern == "batch" and handler.max_batch == 1:
        raise ValidationFailed(
            f"{provider} accepts one recipient per request: use loop", field="pattern"
        )
    return Account(
        name=name,
        provider=provider,
        credentials=_credentials(
            body.get("credentials"),
            handler.credential_fields,
            base.credentials if base.provider == provider else {},
        ),
        sender=_text(body, "sender", base.sender, limit=bounds.ACCOUNT_SENDER),
        fallback_sender=_text(
            body, "fallback_sender", base.fallback_sender, limit=bounds.ACCOUNT_SENDER
        ),
        active=_bool(body, "active", base.active),
        pattern=pattern,
        priority=_int(body, "priority", base.priority),
        base_url=_base_url(body.get("base_url", base.base_url)),
        options=_options(body.get("options", base.options)),
        callback_secret=base.callback_secret,
        description=_text(body, "description", base.description, limit=bounds.DESCRIPTION),
        logo_url=_link(body, "logo_url", base.logo_url),
        signup_url=_link(body, "signup_url", base.signup_url),
    )


def _text(body: Mapping[str, Any], key: str, default: str, *, limit: int) -> str:
    value = body.get(key, default)
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > limit:
        raise ValidationFailed(f"{key} must be text of at most {limit} characters", field=key)
    return value.strip()


def _bool(body: Mapping[str, Any], key: str, default: bool) -> bool:
    value = body.get(key, default)
    if not isinstance(value, bool):
        raise ValidationFailed(f"{key} must be true or false", field=key)
    return value


def _int(body: Mapping[str, Any], key: str, default: int) -> int:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 1_000_000:
        raise ValidationFailed(f"{key} must be a whole number from 0 to 1000000", field=key)
    return value


def _credentials(value: Any, required: tuple[str, ...], old: Mapping[str, str]) -> dict[str, str]:
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise ValidationFailed("credentials must be an object", field="credentials")
    merged = dict(old)
    for key, item in value.items():
        if key not in required:
            raise ValidationFailed(f"unknown credential {key!r}", field=f"credentials.{key}")
        if not isinstance(item, str) or len(item) > bounds.CREDENTIAL:
            raise ValidationFailed(f"credential {key} must be text", field=f"credentials.{key}")
        if item != MASK:
            merged[key] = item
    for key in required:
        if not merged.get(key):
            raise ValidationFailed(f"credential {key} is required", field=f"credentials.{key}")
    return merged


def _link(body: Mapping[str, Any], key: str, default: str) -> str:
    value = _text(body, key, default, limit=bounds.LINK)
    if value and urlsplit(value).scheme not in ("http", "https"):
        raise ValidationFailed(f"{key} must be an http(s) URL", field=key)
    return value


def _base_url(value: Any) -> str:
    if value in (None, ""):
        return ""
    if not isinstance(value, str):
        raise ValidationFailed("base_url must be text", field="base_url")
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
        raise ValidationFailed(
            "base_url must be scheme://host[:port] with no path", field="base_url"
        )
    return f"{parts.scheme}://{parts.netloc}"


def _options(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    problem = f"options must be a JSON object of at most {bounds.OPTIONS_JSON} bytes"
    if not isinstance(value, dict):
        raise ValidationFailed(problem, field="options")
    try:
        # A gateways file's TOML can hold what JSON cannot (nan, inf, dates).
        parsing.check_tree(value, "options")
    except Unparseable as exc:
        raise ValidationFailed(exc.message, field="options") from exc
    if len(json.dumps(value, separators=(",", ":"))) > bounds.OPTIONS_JSON:
        raise ValidationFailed(problem, field="options")
    rate = value.get("rate_per_second")
    if rate is not None and (
        isinstance(rate, bool) or not isinstance(rate, int | float) or rate <= 0
    ):
        raise ValidationFailed(
            "options.rate_per_second must be a number above 0", field="options.rate_per_second"
        )
    return dict(value)


def callback_urls(account: Account, public_url: str) -> dict[str, str]:
    """The URLs to configure at the provider, with the secret that authenticates them."""
    base = f"{public_url}/callbacks/{quote(account.name, safe='')}"
    return {kind: f"{base}/{kind}?key={account.callback_secret}" for kind in ("dlr", "inbound")}


def public_view(account: Account, public_url: str) -> dict[str, Any]:
    secret_fields = handler_for(account.provider).secret_fields
    return {
        "name": account.name,
        "provider": account.provider,
        "credentials": {
            k: MASK if k in secret_fields else v for k, v in account.credentials.items()
        },
        "sender": account.sender,
        "fallback_sender": account.fallback_sender,
        "active": account.active,
        "pattern": account.pattern,
        "priority": account.priority,
        "base_url": account.base_url or None,
        "options": dict(account.options),
        "description": account.description,
        "logo_url": account.logo_url,
        "signup_url": account.signup_url,
        "callback_urls": callback_urls(account, public_url),
    }


def secret_values(account: Account) -> list[str]:
    """The account's secrets, to scrub from anything stored or shown."""
    fields = handler_for(account.provider).secret_fields
    return [v for k, v in account.credentials.items() if k in fields and v] + [
        account.callback_secret
    ]


def redactor_for(account: Account) -> Redactor:
    """What scrubs the account's secrets from its provider's answers: every secret, with
    the other credentials (a username, an account SID) as Basic-auth companions."""
    handler = handler_for(account.provider)
    return Redactor.of(
        [*secret_values(account), *handler.wire_secrets(account)],
        [v for k, v in account.credentials.items() if k not in handler.secret_fields],
    )


def declared_accounts(path: Path, environ: Mapping[str, str]) -> list[Account]:
    """Accounts from a TOML file of `[[account]]` tables, validated like API input.

    A credential written "env:NAME" is read from the environment variable NAME, so the
    file can be committed and the secrets kept out of it.
    """
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"cannot read gateways file {path}: {exc}") from exc
    bodies = document.get("account", [])
    if not isinstance(bodies, list) or not all(isinstance(b, dict) for b in bodies):
        raise SettingsError(f"{path}: accounts are [[account]] tables")
    accounts = []
    for body in bodies:
        name = body.get("name")
        credentials = body.get("credentials", {})
        for key, value in credentials.items() if isinstance(credentials, dict) else ():
            if isinstance(value, str) and value.startswith("env:"):
                variable = value.removeprefix("env:")
                if not environ.get(variable):
                    raise SettingsError(
                        f"{path}: account {name!r} takes credential {key} from ${variable}, "
                        "which is not set"
                    )
                credentials[key] = environ[variable]
        try:
            accounts.append(account_from_body(body))
        except ValidationFailed as exc:
            raise SettingsError(f"{path}: account {name!r}: {exc.message} ({exc.field})") from exc
    return accounts


_EXAMPLE_HEADER = """\
# Accounts declared here are created or updated when smsgw starts (SMSGW_GATEWAYS=path).
# The file wins over edits made through the API; an account keeps its callback secret.
# A credential written "env:NAME" is read from the environment variable NAME.
# Fields: name, provider, credentials, sender, fallback_sender, active, pattern
# ("batch" | "loop"), priority (lower sends first), base_url (replaces the provider's
# scheme, host and port), options, description, logo_url, signup_url.
"""


def example_gateways(handlers: Mapping[str, ProviderHandler] = HANDLERS) -> str:
    """The example gateways file: one account of every provider that has an example,
    under a link to the provider's API documentation, its credentials taken from
    variables named after the provider and the field."""
    blocks = [_EXAMPLE_HEADER]
    for name, handler in handlers.items():
        if not handler.example_account:
            continue
        credentials = ", ".join(
            f'{key} = "env:{name.upper()}_{key.upper()}"' for key in handler.credential_fields
        )
        blocks.append(
            f"# {handler.display_name}: {handler.docs_url}\n"
            "[[account]]\n"
            f'name = "{handler.display_name.lower()}"\n'
            f'provider = "{name}"\n'
            f"credentials = {{ {credentials} }}\n"
            f"{handler.example_account}"
        )
    return "\n".join(blocks)


class AccountDirectory:
    """Accounts by name, cached briefly: callbacks and the dispatcher read them constantly.

    Changes made through this process are seen at once; changes made by another
    process sharing the database within `ttl` seconds.
    """

    def __init__(self, store: Store, ttl: float = 2.0) -> None:
        self._store = store
        self._ttl = ttl
        self._accounts: dict[str, Account] = {}
        self._loaded_at = float("-inf")

    async def _fresh(self) -> dict[str, Account]:
        if time.monotonic() - self._loaded_at > self._ttl:
            self._accounts = {a.name: a for a in await self._store.list_accounts()}
            self._loaded_at = time.monotonic()
        return self._accounts

    def invalidate(self) -> None:
        self._loaded_at = float("-inf")

    async def get(self, name: str) -> Account | None:
        return (await self._fresh()).get(name)

    async def require(self, name: str) -> Account:
        account = await self.get(name)
        if account is None:
            raise NotFound(f"no account named {name!r}", field="account")
        return account

    async def all(self) -> list[Account]:
        accounts = await self._fresh()
        return sorted(accounts.values(), key=lambda a: (a.priority, a.name))

    def provider_of(self, name: str) -> str:
        account = self._accounts.get(name)
        return account.provider if account else ""

    async def declare(self, accounts: list[Account]) -> None:
        """Create or update the accounts a gateways file declares: the file wins, and an
        existing account keeps its callback secret so provider settings stay valid."""
        for account in accounts:
            existing = await self._store.get_account(account.name)
            if existing is None:
                await self._store.create_account(account)
            else:
                await self._store.update_account(
                    replace(account, callback_secret=existing.callback_secret)
                )
        self.invalidate()

    async def ensure_sandbox(self, name: str) -> None:
        """The sandbox account a fresh install starts with, so the first send works."""
        if name and await self._store.get_account(name) is None:
            account = Account(
                name=name,
                provider="sandbox",
                priority=1000,
                callback_secret=new_callback_secret(),
                description="Local sandbox: no real SMS is sent",
            )
            with contextlib.suppress(Conflict):  # another process created it first
                await self._store.create_account(replace(account, pattern="batch"))
            self.invalidate()
