"""Settings: config/settings.toml defaults, overridden by environment variables."""

from __future__ import annotations

import base64
import binascii
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from phonenumbers import SUPPORTED_REGIONS

from service.errors import SettingsError

DEFAULT_FILE = Path(__file__).resolve().parent.parent / "config" / "settings.toml"


@dataclass(frozen=True, slots=True)
class Settings:
    host: str
    port: int
    public_url: str
    api_tokens: tuple[str, ...]
    max_body: int
    max_in_flight: int
    auth_failure_limit: int
    auth_failure_window: float
    data_dir: Path
    database_url: str
    busy_timeout: float
    pool_min: int
    pool_max: int
    log_format: str
    default_region: str
    max_recipients: int
    default_sender: str
    batch_size: int
    poll_interval: float
    rate_per_second: float
    max_attempts: int
    backoff_base: float
    backoff_cap: float
    retry_after_min: float
    retry_after_max: float
    lease_seconds: float
    request_timeout: float
    concurrency: int
    bulk_share: float
    breaker_threshold: int
    breaker_cooldown: float
    poll_first_after: float
    poll_max_interval: float
    poll_give_up: float
    ambiguous_conclude_after: float
    ambiguous_match_window: float
    gateways_file: str
    autoreply_file: str
    autoreply_max_per_sender: int
    autoreply_window: float
    autoreply_stop_reply: str
    autoreply_start_reply: str
    autoreply_own_numbers: tuple[str, ...]
    callback_max_body: int
    unmatched_ttl: float
    inbox_batch: int
    inbox_busy_share: float
    inbox_max_depth: int
    inbox_max_lag: float
    inbox_retention: float
    sandbox_account: str
    sandbox_dlr_delay: float
    webhook_timeout: float
    webhook_backoff_base: float
    webhook_backoff_cap: float
    webhook_give_up: float
    webhook_batch_size: int
    webhook_lease_seconds: float
    webhook_concurrency: int
    status_callback_secret: str = field(repr=False)
    """Signs the status callbacks of messages sent with an admin token; '': such a
    send may not ask for callbacks."""
    web_history_rows: int
    web_session_ttl: float

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "smsgw.db"

    @property
    def store_name(self) -> str:
        """Where the store lives, for logs: the SQLite file, or the PostgreSQL server and
        database without credentials."""
        if not self.database_url:
            return str(self.sqlite_path)
        url = urlsplit(self.database_url)
        return f"{url.scheme}://{url.hostname or ''}{f':{url.port}' if url.port else ''}{url.path}"

    @property
    def base_url(self) -> str:
        """The URL providers reach this service at, without a trailing slash."""
        return (self.public_url or f"http://127.0.0.1:{self.port}").rstrip("/")

    def with_server(self, host: str | None, port: int | None) -> Settings:
        return replace(self, host=host or self.host, port=port or self.port)


# (section, key) in the TOML file -> field name
_TOML_KEYS = {
    ("server", "host"): "host",
    ("server", "port"): "port",
    ("server", "public_url"): "public_url",
    ("server", "api_tokens"): "api_tokens",
    ("server", "max_body"): "max_body",
    ("server", "max_in_flight"): "max_in_flight",
    ("server", "auth_failure_limit"): "auth_failure_limit",
    ("server", "auth_failure_window"): "auth_failure_window",
    ("storage", "data_dir"): "data_dir",
    ("storage", "database_url"): "database_url",
    ("storage", "busy_timeout"): "busy_timeout",
    ("storage", "pool_min"): "pool_min",
    ("storage", "pool_max"): "pool_max",
    ("log", "format"): "log_format",
    ("phone", "default_region"): "default_region",
    ("api", "max_recipients"): "max_recipients",
    ("api", "default_sender"): "default_sender",
    ("dispatch", "batch_size"): "batch_size",
    ("dispatch", "poll_interval"): "poll_interval",
    ("dispatch", "rate_per_second"): "rate_per_second",
    ("dispatch", "max_attempts"): "max_attempts",
    ("dispatch", "backoff_base"): "backoff_base",
    ("dispatch", "backoff_cap"): "backoff_cap",
    ("dispatch", "retry_after_min"): "retry_after_min",
    ("dispatch", "retry_after_max"): "retry_after_max",
    ("dispatch", "lease_seconds"): "lease_seconds",
    ("dispatch", "request_timeout"): "request_timeout",
    ("dispatch", "concurrency"): "concurrency",
    ("dispatch", "bulk_share"): "bulk_share",
    ("dispatch", "breaker_threshold"): "breaker_threshold",
    ("dispatch", "breaker_cooldown"): "breaker_cooldown",
    ("poll", "first_after"): "poll_first_after",
    ("poll", "max_interval"): "poll_max_interval",
    ("poll", "give_up"): "poll_give_up",
    ("ambiguous", "conclude_after"): "ambiguous_conclude_after",
    ("ambiguous", "match_window"): "ambiguous_match_window",
    ("gateways", "file"): "gateways_file",
    ("autoreply", "file"): "autoreply_file",
    ("autoreply", "max_per_sender"): "autoreply_max_per_sender",
    ("autoreply", "window"): "autoreply_window",
    ("autoreply", "stop_reply"): "autoreply_stop_reply",
    ("autoreply", "start_reply"): "autoreply_start_reply",
    ("autoreply", "own_numbers"): "autoreply_own_numbers",
    ("callbacks", "max_body"): "callback_max_body",
    ("dlr", "unmatched_ttl"): "unmatched_ttl",
    ("inbox", "batch"): "inbox_batch",
    ("inbox", "busy_share"): "inbox_busy_share",
    ("inbox", "max_depth"): "inbox_max_depth",
    ("inbox", "max_lag"): "inbox_max_lag",
    ("inbox", "retention"): "inbox_retention",
    ("sandbox", "account"): "sandbox_account",
    ("sandbox", "dlr_delay"): "sandbox_dlr_delay",
    ("webhooks", "timeout"): "webhook_timeout",
    ("webhooks", "backoff_base"): "webhook_backoff_base",
    ("webhooks", "backoff_cap"): "webhook_backoff_cap",
    ("webhooks", "give_up"): "webhook_give_up",
    ("webhooks", "batch_size"): "webhook_batch_size",
    ("webhooks", "lease_seconds"): "webhook_lease_seconds",
    ("webhooks", "concurrency"): "webhook_concurrency",
    ("status_callbacks", "secret"): "status_callback_secret",
    ("web", "history_rows"): "web_history_rows",
    ("web", "session_ttl"): "web_session_ttl",
}
_ENV_KEYS = {
    "SMSGW_DATA": "data_dir",
    "SMSGW_API_TOKENS": "api_tokens",
    "SMSGW_PUBLIC_URL": "public_url",
    "DATABASE_URL": "database_url",
    "SMSGW_LOG_FORMAT": "log_format",
    "SMSGW_GATEWAYS": "gateways_file",
    "SMSGW_AUTOREPLY": "autoreply_file",
    "SMSGW_CALLBACK_SECRET": "status_callback_secret",
}
_POSITIVE = {
    "port",
    "max_body",
    "max_in_flight",
    "auth_failure_limit",
    "auth_failure_window",
    "max_recipients",
    "batch_size",
    "poll_interval",
    "rate_per_second",
    "max_attempts",
    "backoff_base",
    "backoff_cap",
    "retry_after_min",
    "retry_after_max",
    "lease_seconds",
    "request_timeout",
    "concurrency",
    "breaker_threshold",
    "breaker_cooldown",
    "callback_max_body",
    "unmatched_ttl",
    "inbox_batch",
    "inbox_busy_share",
    "inbox_max_depth",
    "inbox_max_lag",
    "inbox_retention",
    "busy_timeout",
    "pool_min",
    "pool_max",
    "webhook_timeout",
    "webhook_backoff_base",
    "webhook_backoff_cap",
    "webhook_give_up",
    "webhook_batch_size",
    "webhook_lease_seconds",
    "webhook_concurrency",
    "poll_first_after",
    "poll_max_interval",
    "poll_give_up",
    "ambiguous_conclude_after",
    "ambiguous_match_window",
    "autoreply_max_per_sender",
    "autoreply_window",
    "web_history_rows",
    "web_session_ttl",
}


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read the settings file and the environment; SettingsError names a bad value."""
    env = os.environ if environ is None else environ
    path = Path(env.get("SMSGW_CONFIG", "") or DEFAULT_FILE)
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"cannot read settings file {path}: {exc}") from exc
    raw: dict[str, Any] = {}
    for (section, key), name in _TOML_KEYS.items():
        if key not in document.get(section, {}):
            raise SettingsError(f"{path}: [{section}] {key} is missing")
        raw[name] = document[section][key]
    for variable, name in _ENV_KEYS.items():
        if variable in env:
            raw[name] = env[variable]
    return _coerce(raw)


def _coerce(raw: dict[str, Any]) -> Settings:
    values: dict[str, Any] = {}
    for f in fields(Settings):
        value = raw[f.name]
        try:
            values[f.name] = _convert(f.name, str(f.type), value)
        except (TypeError, ValueError) as exc:
            raise SettingsError(f"setting {f.name}={value!r} is invalid: {exc}") from exc
    settings = Settings(**values)
    if settings.log_format not in ("json", "console"):
        raise SettingsError(
            f"SMSGW_LOG_FORMAT must be json or console, not {settings.log_format!r}"
        )
    if settings.public_url and not settings.public_url.startswith(("http://", "https://")):
        raise SettingsError(
            f"SMSGW_PUBLIC_URL must start with http:// or https://: {settings.public_url!r}"
        )
    if settings.database_url and not settings.database_url.startswith(
        ("postgresql://", "postgres://")
    ):
        raise SettingsError("DATABASE_URL must be a postgresql:// URL")
    if settings.pool_min > settings.pool_max:
        raise SettingsError("[storage] pool_min must not exceed [storage] pool_max")
    if settings.default_region and settings.default_region.upper() not in SUPPORTED_REGIONS:
        raise SettingsError(
            f"[phone] default_region {settings.default_region!r} is not an "
            "ISO country code phonenumbers knows"
        )
    if settings.webhook_lease_seconds <= settings.webhook_timeout:
        # A lease that ran out mid-request would let another process send it again.
        raise SettingsError("[webhooks] lease_seconds must be longer than [webhooks] timeout")
    if settings.retry_after_min > settings.retry_after_max:
        raise SettingsError("[dispatch] retry_after_min must not exceed retry_after_max")
    if not 0 <= settings.bulk_share < 1:
        raise SettingsError(
            "[dispatch] bulk_share is a share of an account's sends: at least 0, below 1"
        )
    if settings.inbox_busy_share > 1:
        raise SettingsError("[inbox] busy_share is a share of the time: at most 1")
    if settings.web_history_rows > 1000:
        raise SettingsError("[web] history_rows must be at most 1000")
    if settings.status_callback_secret and not _is_webhook_secret(settings.status_callback_secret):
        raise SettingsError(
            "SMSGW_CALLBACK_SECRET ([status_callbacks] secret) must be whsec_ followed by "
            "at least 24 random bytes in base64"
        )
    if not 1 <= settings.port <= 65535:
        raise SettingsError(f"port {settings.port} is out of range")
    return settings


def _is_webhook_secret(value: str) -> bool:
    """A Standard Webhooks secret: `whsec_` and the base64 of the signing key."""
    if not value.startswith("whsec_"):
        return False
    try:
        key = base64.b64decode(value.removeprefix("whsec_"), validate=True)
    except binascii.Error:
        return False
    return len(key) >= 24


def _convert(name: str, kind: str, value: Any) -> Any:
    if kind == "tuple[str, ...]":
        items = value.split(",") if isinstance(value, str) else list(value)
        return tuple(str(item).strip() for item in items if str(item).strip())
    if kind == "Path":
        return Path(str(value)).expanduser()
    if kind == "str":
        if not isinstance(value, str):
            raise TypeError("expected text")
        return value.strip()
    if isinstance(value, bool):
        raise TypeError("expected a number")
    number = int(value) if kind == "int" else float(value)
    if not math.isfinite(number):
        raise ValueError("must be a finite number")
    if name in _POSITIVE and number <= 0:
        raise ValueError("must be greater than zero")
    if name == "sandbox_dlr_delay" and number < 0:
        raise ValueError("must not be negative")
    return number
