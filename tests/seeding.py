"""Stores filled with submitted messages, as provider reports find them: made through
the Store API as the dispatcher would, for tests and benchmarks that need many."""

from __future__ import annotations

import time
import uuid

from service.model import Account, AttemptResult, Decision, NewMessage
from service.reconcile import match_key
from service.settings import Settings
from service.store import open_store

REQUEST_ID = "BR{:09d}"
"""The request ID message n is submitted under."""


def number_of(n: int) -> str:
    return f"+4670{n % 10_000_000:07d}"


async def submitted(settings: Settings, account: Account, count: int, *, batch: int = 5000) -> None:
    """`count` messages accepted by `account`'s provider, message n under REQUEST_ID(n)."""
    store = open_store(settings)
    await store.open()
    try:
        if await store.get_account(account.name) is None:
            await store.create_account(account)
        for start in range(0, count, batch):
            numbers = range(start, min(start + batch, count))
            messages = [
                NewMessage(uuid.uuid4().hex, account.name, number_of(n), "x", "bench", "GSM-7", 1)
                for n in numbers
            ]
            await store.enqueue(messages, {})
            claimed = await store.claim([m.id for m in messages], time.time(), 3600)
            assert len(claimed) == len(messages)
            await store.record_attempts(
                [
                    AttemptResult(
                        m.id,
                        Decision.ACCEPTED,
                        request_ids=(REQUEST_ID.format(n),),
                        keys=(match_key(REQUEST_ID.format(n), "", False),),
                        http_status=200,
                    )
                    for n, m in zip(numbers, messages, strict=True)
                ]
            )
    finally:
        await store.close()
