"""What a running smsgw process holds: settings, store, accounts, HTTP client, dispatcher.

`smsgw serve` builds one inside the app's lifespan; `smsgw worker` builds one with
no HTTP server around it. Both run the dispatcher, so work is shared through the
outbox whichever processes are up.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from service.accounts import AccountDirectory, declared_accounts
from service.compose import ComposeRules
from service.dispatcher import Dispatcher
from service.events import EventBus, EventFormat, EventLogger
from service.poller import Poller
from service.settings import Settings
from service.store import Store, open_store


@dataclass(slots=True)
class Runtime:
    settings: Settings
    store: Store
    directory: AccountDirectory
    client: httpx.AsyncClient
    dispatcher: Dispatcher
    compose_rules: ComposeRules
    events: EventBus
    event_format: EventFormat

    def wake_dispatcher(self) -> None:
        self.dispatcher.wake()


@contextlib.asynccontextmanager
async def running(settings: Settings, *, dispatch: bool = True) -> AsyncIterator[Runtime]:
    directory: AccountDirectory | None = None
    event_format = EventFormat(lambda name: directory.provider_of(name) if directory else "")
    events = EventBus(EventLogger(event_format))
    store = open_store(settings, events)
    await store.open()
    directory = AccountDirectory(store)
    client = httpx.AsyncClient(
        timeout=httpx.Timeout(settings.request_timeout, connect=min(5.0, settings.request_timeout)),
        limits=httpx.Limits(
            max_connections=settings.concurrency * 4,
            max_keepalive_connections=settings.concurrency * 2,
        ),
    )
    dispatcher = Dispatcher(store, directory, settings, client)
    tasks = (
        [
            asyncio.create_task(dispatcher.run(), name="dispatcher"),
            asyncio.create_task(Poller(store, directory, settings, client).run(), name="poller"),
        ]
        if dispatch
        else []
    )
    try:
        if settings.gateways_file:
            await directory.declare(declared_accounts(Path(settings.gateways_file), os.environ))
        await directory.ensure_sandbox(settings.sandbox_account)
        yield Runtime(
            settings,
            store,
            directory,
            client,
            dispatcher,
            ComposeRules(settings.default_region, settings.default_sender, settings.max_recipients),
            events,
            event_format,
        )
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await client.aclose()
        await store.close()
