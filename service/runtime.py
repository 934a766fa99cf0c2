"""What a running smsgw process holds: settings, store, accounts, HTTP client, dispatcher.

`smsgw serve` builds one inside the app's lifespan; `smsgw worker` builds one with
no HTTP server around it. Both run the dispatcher, so work is shared through the
outbox whichever processes are up.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx

from service.accounts import AccountDirectory
from service.compose import ComposeRules
from service.dispatcher import Dispatcher
from service.events import EventLogger
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

    def wake_dispatcher(self) -> None:
        self.dispatcher.wake()


@contextlib.asynccontextmanager
async def running(settings: Settings, *, dispatch: bool = True) -> AsyncIterator[Runtime]:
    directory: AccountDirectory | None = None
    store = open_store(
        settings, EventLogger(lambda name: directory.provider_of(name) if directory else "")
    )
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
    task = asyncio.create_task(dispatcher.run(), name="dispatcher") if dispatch else None
    try:
        await directory.ensure_sandbox(settings.sandbox_account)
        yield Runtime(
            settings,
            store,
            directory,
            client,
            dispatcher,
            ComposeRules(settings.default_region, settings.default_sender, settings.max_recipients),
        )
    finally:
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await client.aclose()
        await store.close()
