"""What a running smsgw process holds: settings, store, accounts, HTTP client, dispatcher.

`smsgw serve` builds one inside the app's lifespan; `smsgw worker` builds one with
no HTTP server around it. Both run the dispatcher, so work is shared through the
outbox whichever processes are up.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from service.accounts import AccountDirectory, declared_accounts
from service.autoreply import Policy, declared_rules, own_number_keys
from service.callback_inbox import Appender, Applier
from service.clock import Clock
from service.compose import ComposeRules
from service.dispatcher import Dispatcher
from service.events import EventBus, EventFormat, EventLogger
from service.keyring import KeyResolver
from service.metrics import Metrics
from service.poller import Poller
from service.ratelimit import FailedAuthentications
from service.settings import Settings
from service.status_callbacks import StatusCallbackWorker
from service.store import Store, open_store
from service.transport import provider_client
from service.webhooks import WebhookWorker


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
    metrics: Metrics
    auth_failures: FailedAuthentications
    """Shared by every door that checks a credential: API, console, callbacks."""
    applier: Applier
    appender: Appender
    keys: KeyResolver
    """Client keys to principals; shared with the bearer middleware."""
    clock: Clock = time.time
    """The moment clients' sends are counted at, in their quotas and rate limits."""

    def wake_dispatcher(self, urgent: bool = False) -> None:
        self.dispatcher.wake(urgent)

    @property
    def autoreply_policy(self) -> Policy:
        s = self.settings
        return Policy(
            max_per_sender=s.autoreply_max_per_sender,
            window=s.autoreply_window,
            stop_reply=s.autoreply_stop_reply,
            start_reply=s.autoreply_start_reply,
            own_numbers=own_number_keys(s.autoreply_own_numbers),
            default_region=s.default_region,
        )


@contextlib.asynccontextmanager
async def running(
    settings: Settings,
    *,
    dispatch: bool = True,
    metrics: Metrics | None = None,
    auth_failures: FailedAuthentications | None = None,
    keys: KeyResolver | None = None,
    clock: Clock = time.time,
) -> AsyncIterator[Runtime]:
    directory: AccountDirectory | None = None
    event_format = EventFormat(lambda name: directory.provider_of(name) if directory else "")
    events = EventBus(EventLogger(event_format))
    if metrics is None:
        metrics = Metrics()
    events.subscribe(metrics.observe_events)
    store = open_store(settings, events)
    await store.open()
    directory = AccountDirectory(store)
    keys = keys or KeyResolver()
    keys.bind(store.principal_for, store.touch_client_keys)
    client = provider_client(settings)
    dispatcher = Dispatcher(store, directory, settings, client, metrics)
    applier = Applier(
        store,
        settings.inbox_batch,
        settings.inbox_retention,
        busy_share=settings.inbox_busy_share,
        max_depth=settings.inbox_max_depth,
        max_lag=settings.inbox_max_lag,
    )
    # Every process applies stored callbacks, whether or not it dispatches.
    tasks = [asyncio.create_task(applier.run(), name="inbox-applier")] + (
        [
            asyncio.create_task(dispatcher.run(), name="dispatcher"),
            asyncio.create_task(Poller(store, directory, settings, client).run(), name="poller"),
            asyncio.create_task(
                WebhookWorker(store, settings, client, events, event_format).run(),
                name="webhooks",
            ),
            asyncio.create_task(
                StatusCallbackWorker(store, settings, client, events).run(),
                name="status-callbacks",
            ),
        ]
        if dispatch
        else []
    )
    try:
        if settings.gateways_file:
            await directory.declare(declared_accounts(Path(settings.gateways_file), os.environ))
        await directory.ensure_sandbox(settings.sandbox_account)
        if settings.autoreply_file:
            for rule in declared_rules(Path(settings.autoreply_file)):
                await store.put_rule(rule)
        yield Runtime(
            settings,
            store,
            directory,
            client,
            dispatcher,
            ComposeRules(settings.default_region, settings.default_sender, settings.max_recipients),
            events,
            event_format,
            metrics=metrics,
            auth_failures=auth_failures
            or FailedAuthentications(settings.auth_failure_limit, settings.auth_failure_window),
            applier=applier,
            appender=Appender(store, applier.appended),
            keys=keys,
            clock=clock,
        )
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await client.aclose()
        await store.close()
