"""The poller: asks providers that push no reports for the status of pending messages.

Messages whose provider cannot push reports (or whose account sets `options.poll`) are
scheduled for polling when accepted. Each poll's reports go through the same path as
callbacks, so a poll and a pushed report for one message can never count twice. The
interval doubles after each poll up to `poll.max_interval`; after `poll.give_up`
seconds the message is left pending and `message.poll_gave_up` says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from functools import partial

import httpx
import structlog

from handlers import handler_for
from service import bounds, reconcile
from service.accounts import AccountDirectory, redactor_for
from service.errors import CallbackInvalid
from service.model import PollDue
from service.settings import Settings
from service.store import Store
from service.transport import execute
from service.worker import run_passes

_log = structlog.get_logger("smsgw.poller")


class Poller:
    def __init__(
        self,
        store: Store,
        directory: AccountDirectory,
        settings: Settings,
        client: httpx.AsyncClient,
    ) -> None:
        self._store = store
        self._directory = directory
        self._settings = settings
        self._client = client

    async def run(self, idle: float = 1.0) -> None:
        await run_passes(self.run_once, partial(asyncio.sleep, idle), "poller.pass_failed")

    async def run_once(self) -> bool:
        due = await self._store.due_polls(
            time.time(), self._settings.batch_size, self._settings.lease_seconds
        )
        await asyncio.gather(*(self._poll(item) for item in due))
        return bool(due)

    async def _poll(self, due: PollDue) -> None:
        account = await self._directory.get(due.account)
        handler = handler_for(account.provider) if account else None
        if (
            account is None
            or handler is None
            or (time.time() - due.since > self._settings.poll_give_up)
        ):
            await self._store.reschedule_poll(due.message_id, None)
            return
        base_url = account.base_url
        for request_id in due.request_ids:
            request = handler.poll_request(account, base_url, [request_id])
            if request is None:
                await self._store.reschedule_poll(due.message_id, None)
                return
            with contextlib.suppress(httpx.HTTPError):
                response = await execute(self._client, request, redactor_for(account))
                for answered in handler.parse_poll_response(account, [request_id], response):
                    try:
                        report = bounds.checked_report(answered)
                    except CallbackInvalid as exc:
                        _log.warning(
                            "poll.report_refused", account=account.name, reason=exc.message
                        )
                        continue
                    key = reconcile.match_key(
                        report.request_id, report.recipient, handler.shares_request_ids
                    )
                    await self._store.apply_report(account.name, report, key)
        interval = min(
            self._settings.poll_max_interval, self._settings.poll_first_after * 2 ** (due.tries + 1)
        )
        await self._store.reschedule_poll(due.message_id, time.time() + interval)
