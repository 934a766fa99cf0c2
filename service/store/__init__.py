"""Durable state behind the Store Protocol; `open_store` picks the implementation."""

from __future__ import annotations

from service.errors import SettingsError
from service.settings import Settings
from service.store.protocol import EventSink, Store
from service.store.sqlite import SqliteStore

__all__ = ["Store", "open_store"]


def open_store(settings: Settings, on_events: EventSink | None = None) -> Store:
    """The configured store, not yet opened."""
    if settings.database_url:
        raise SettingsError(
            "DATABASE_URL is set, but this build stores on SQLite only; unset it to use "
            f"{settings.sqlite_path}"
        )
    return SqliteStore(settings.sqlite_path, on_events, busy_timeout=settings.busy_timeout)
