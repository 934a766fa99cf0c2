"""Durable state behind the Store Protocol; `open_store` picks the implementation."""

from __future__ import annotations

from service.sealing import Sealer, load_key
from service.settings import Settings
from service.store.postgres import PostgresStore
from service.store.protocol import EventSink, Store
from service.store.sqlite import SqliteStore

__all__ = ["Store", "open_store"]


def open_store(settings: Settings, on_events: EventSink | None = None) -> Store:
    """The configured store, not yet opened: PostgreSQL when DATABASE_URL names one."""
    sealer = Sealer(load_key(settings.data_dir))
    if settings.database_url:
        return PostgresStore(
            settings.database_url,
            on_events,
            pool_min=settings.pool_min,
            pool_max=settings.pool_max,
            busy_timeout=settings.busy_timeout,
            sealer=sealer,
        )
    return SqliteStore(
        settings.sqlite_path, on_events, busy_timeout=settings.busy_timeout, sealer=sealer
    )
