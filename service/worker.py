"""The loop the background workers (dispatcher, poller, webhooks) share."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import NoReturn

import structlog

_log = structlog.get_logger("smsgw.worker")


async def run_passes(
    one_pass: Callable[[], Awaitable[bool]],
    idle: Callable[[], Awaitable[None]],
    failed_event: str,
) -> NoReturn:
    """Pass after pass until cancelled; `idle` only after a pass that found no work.

    A failing pass is logged and counts as one without work: the store keeps the work,
    so the next pass picks it up, and one bad pass must not stop the worker.
    """
    while True:
        try:
            worked = await one_pass()
        except Exception:
            _log.exception(failed_event)
            worked = False
        if not worked:
            await idle()
