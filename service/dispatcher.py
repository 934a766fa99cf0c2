"""The outbox worker: sends queued messages to their providers.

Each pass reads the due messages and groups them per account into provider requests
(batch or loop). A request is claimed only once it holds one of the `concurrency`
request slots, and it starts as soon as its claim is committed; the requests that
found slots free together are claimed in one transaction. Each request records what
the provider said, the results of requests that end together in one transaction
(`Coalescer`). A pass ends once its requests have ended and been recorded: a pass's
bulk requests go one per account and content, not `concurrency` passes' worth at
once, which providers (and the scale-out test's fake, whose reports then lagged its
answers past the request timeout) would take as a burst.

A pass reads each priority's due messages (`batch_size` of each) and sends an
account's requests in the order `service.lanes` gives: high first, bulk within its
share. A high-priority message that comes due mid-pass must not wait for the pass's
bulk: before each lot the pass looks for due high messages it did not read (at once
when this process queued one, else every `poll_interval`, for other processes'), and
if it finds any it stops, leaving its unclaimed requests in the outbox; the next pass
reads them again, behind the new high ones.

The claim is committed before the request, so a process that dies mid-send leaves a
claim whose lease expires into `outcome_unknown` rather than a blind resend; for the
same reason a request that may have reached the provider (read timeout, reset
connection) is never retried. No claim waits for a slot, so what a crash leaves to
its lease is at most the requests in flight, not messages that never went out.

Only failures that prove the provider did not take the message are retried:
connection refused or timed out while connecting, 429, 503, and providers' own "try
later" answers. Any other 5xx (a proxy's 500, 502 or 504 included) leaves the outcome
unknown, like a read timeout: the message waits for a report or the conclusion
(`service.ambiguous`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter, deque
from collections.abc import Coroutine, Iterator, Sequence
from itertools import groupby
from typing import Any

import httpx
import structlog

from handlers import handler_for
from handlers.base import ProviderHandler, SendRefused
from service.accounts import AccountDirectory, callback_urls, redactor_for
from service.attempt_policy import Answer, AttemptPolicy
from service.breaker import CircuitBreaker
from service.coalesce import Coalescer
from service.lanes import interleave
from service.metrics import Metrics
from service.model import (
    Account,
    AttemptResult,
    Decision,
    MessageRecord,
    Outcome,
    OutgoingSms,
    Priority,
    RecipientResult,
    SendBatch,
)
from service.ratelimit import TokenBucket
from service.redact import truncate
from service.settings import Settings
from service.store import Store
from service.transport import NOT_SENT, execute
from service.worker import run_passes

_log = structlog.get_logger("smsgw.dispatcher")


class Dispatcher:
    def __init__(
        self,
        store: Store,
        directory: AccountDirectory,
        settings: Settings,
        client: httpx.AsyncClient,
        metrics: Metrics,
    ) -> None:
        self._store = store
        self._directory = directory
        self._settings = settings
        self._client = client
        self._metrics = metrics
        self._wakeup = asyncio.Event()
        self._buckets: dict[str, TokenBucket] = {}
        self._in_flight = asyncio.Semaphore(settings.concurrency)
        self._sending: set[asyncio.Task[None]] = set()
        self._records = Coalescer(store.record_attempts)
        self._breaker = CircuitBreaker(settings.breaker_threshold, settings.breaker_cooldown)
        self._next_sweep = 0.0
        self._policy = AttemptPolicy(settings, directory, self._client_accounts)
        self._urgent = False
        self._next_probe = 0.0
        self._pass_ids: frozenset[str] = frozenset()
        self._preempted = False
        self._complete: set[Priority] = set(Priority)

    async def _client_accounts(self, client: str) -> tuple[str, ...] | None:
        found = await self._store.get_client(client)
        return found.accounts if found is not None else ()

    def wake(self, urgent: bool = False) -> None:
        """New work was queued by this process: start a pass now, not at the next tick.
        `urgent`: high-priority work, which a pass under way makes way for at once."""
        self._urgent = self._urgent or urgent
        self._wakeup.set()

    async def run(self) -> None:
        try:
            await run_passes(self._sweep_and_send, self._idle, "dispatcher.pass_failed")
        finally:
            # Every request runs to its end, even when the dispatcher is stopped: a
            # cancelled one could leave a message the provider took looking unsent.
            await self.drain()

    async def drain(self) -> None:
        """Wait for the requests still in flight and their records."""
        while self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)

    async def _sweep_and_send(self) -> bool:
        if time.time() >= self._next_sweep:
            await self._store.expire_claims(time.time(), self._policy.ambiguity)
            await self._store.conclude_unresolved(time.time())
            await self._store.expire_unsent(time.time())
            self._next_sweep = time.time() + self._settings.lease_seconds / 4
        return await self.run_once()

    async def _idle(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), self._settings.poll_interval)
        self._wakeup.clear()

    async def run_once(self) -> bool:
        """One pass over the due outbox; True when there was work."""
        self._urgent = self._preempted = False
        self._next_probe = time.monotonic() + self._settings.poll_interval
        due = await self._store.due_messages(time.time(), self._settings.batch_size)
        if not due:
            return False
        self._pass_ids = frozenset(m.id for m in due)
        read = Counter(m.priority for m in due)
        self._complete = {p for p in Priority if read[p] < self._settings.batch_size}
        groups = [
            (account, list(messages))
            for account, messages in groupby(
                sorted(due, key=lambda m: m.account), key=lambda m: m.account
            )
        ]
        await asyncio.gather(*(self._send_account(name, messages) for name, messages in groups))
        await self.drain()
        return True

    async def _send_account(self, name: str, messages: list[MessageRecord]) -> None:
        account = await self._directory.get(name)
        if account is None or not account.active:
            reason = "account_missing" if account is None else "account_inactive"
            await self._fail_unsendable(messages, reason)
            return
        handler = handler_for(account.provider)
        bucket = self._buckets.get(name)
        rate = float(account.options.get("rate_per_second", self._settings.rate_per_second))
        if bucket is None or bucket.rate != rate:
            bucket = self._buckets[name] = TokenBucket(rate)
        lanes = {
            priority: list(
                self._batches(account, handler, [m for m in messages if m.priority is priority])
            )
            for priority in Priority
        }
        pending = deque(interleave(lanes, self._settings.bulk_share, self._complete))
        while pending:
            if await self._high_came_due():
                return  # the unclaimed requests wait for the next pass, behind it
            await bucket.acquire(len(pending[0]))
            # Taken before the breaker is read: a request that waited for a slot sees
            # the failures of the requests it waited for.
            await self._in_flight.acquire()
            # Checked before each lot: an outage found mid-pass stops the pass.
            open_until = self._breaker.open_until(account.name)
            if open_until is not None:
                self._in_flight.release()
                won = await self._claim_messages([m for batch in pending for m in batch])
                await self._postpone(account, won, open_until)
                return
            if self._breaker.half_open(account.name):
                # The probe goes alone: its answer decides whether the rest are sent.
                for batch in await self._claim_lot([pending.popleft()]):
                    await self._send_claimed(account, handler, batch)
                continue
            lot = [pending.popleft()]
            while pending and not self._in_flight.locked() and bucket.try_acquire(len(pending[0])):
                await self._in_flight.acquire()  # free: returns at once
                lot.append(pending.popleft())
            for batch in await self._claim_lot(lot):
                self._launch(self._send_claimed(account, handler, batch))

    async def _high_came_due(self) -> bool:
        """Whether high-priority messages this pass did not read are due: looked for
        at once after an urgent wake, else every `poll_interval` (other processes
        cannot wake this one). Once found, every account's sender stops its pass."""
        now = time.monotonic()
        if self._preempted or not (self._urgent or now >= self._next_probe):
            return self._preempted
        self._urgent = False
        self._next_probe = now + self._settings.poll_interval
        high = await self._store.due_messages(
            time.time(), self._settings.batch_size, (Priority.HIGH,)
        )
        self._preempted = self._preempted or any(m.id not in self._pass_ids for m in high)
        return self._preempted

    async def _claim_lot(self, lot: list[list[MessageRecord]]) -> list[list[MessageRecord]]:
        """Claim the messages of `lot`, requests that each hold a slot already, in one
        transaction; the requests with the messages this process won. A request that
        won none frees its slot; a stop mid-claim gives the lot back to the outbox."""
        claiming = asyncio.ensure_future(self._claim_messages([m for b in lot for m in b]))
        try:
            won = {m.id for m in await asyncio.shield(claiming)}
        except BaseException:
            for _ in lot:
                self._in_flight.release()
            if not claiming.cancelled():
                with contextlib.suppress(Exception):
                    await self._store.release([m.id for m in await claiming])
            raise
        claimed = []
        for batch in lot:
            mine = [m for m in batch if m.id in won]
            if mine:
                claimed.append(mine)
            else:
                self._in_flight.release()
        return claimed

    async def _claim_messages(self, messages: Sequence[MessageRecord]) -> list[MessageRecord]:
        """Claim `messages` in one transaction; those this process won."""
        if not messages:
            return []
        won = set(
            await self._store.claim(
                [m.id for m in messages], time.time(), self._settings.lease_seconds
            )
        )
        return [m for m in messages if m.id in won]

    def _launch(self, sending: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(sending)
        self._sending.add(task)
        task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._sending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _log.error("dispatcher.send_failed", exc_info=task.exception())

    @staticmethod
    def _batches(
        account: Account, handler: ProviderHandler, messages: list[MessageRecord]
    ) -> Iterator[list[MessageRecord]]:
        if account.pattern != "batch" or handler.max_batch == 1:
            for message in messages:
                yield [message]
            return

        def same_content(m: MessageRecord) -> tuple[str, str, float]:
            # One request carries one validity period: messages differing in it go apart.
            return (m.text, m.sender, m.expires_at or 0.0)

        for _, group in groupby(sorted(messages, key=same_content), key=same_content):
            alike = list(group)
            for start in range(0, len(alike), handler.max_batch):
                yield alike[start : start + handler.max_batch]

    async def _fail_unsendable(self, messages: Sequence[MessageRecord], reason: str) -> None:
        results = []
        for message in await self._claim_messages(messages):
            answer = Answer(
                reason, f"{reason.replace('_', ' ')}: {message.account}", requested=False
            )
            gone = Account(name=message.account, provider="")
            target = await self._policy.failover_target(gone, message)
            results.append(
                answer.result(message.id, Decision.RETRY, new_account=target, retry_at=time.time())
                if target
                else answer.result(message.id, Decision.FAILED)
            )
        await self._store.record_attempts(results)

    async def _postpone(
        self, account: Account, messages: Sequence[MessageRecord], until: float
    ) -> None:
        """The account's circuit is open: fail over now where smsgw chose the account,
        otherwise wait for the circuit's next probe. `messages` are claimed already."""
        answer = Answer(
            "circuit_open",
            f"{account.name} failed {self._settings.breaker_threshold} requests in a row; "
            "not tried until its circuit's next probe",
            requested=False,
        )
        results = []
        for message in messages:
            target = await self._policy.failover_target(account, message)
            results.append(
                answer.result(message.id, Decision.RETRY, new_account=target, retry_at=time.time())
                if target
                else answer.result(message.id, Decision.RETRY, retry_at=until)
            )
        await self._store.record_attempts(results)

    async def _send_claimed(
        self, account: Account, handler: ProviderHandler, messages: list[MessageRecord]
    ) -> None:
        """Send one claimed request in the slot taken for it, and record the results."""
        try:
            results = await self._exchange(account, handler, messages)
        finally:
            # Freed as soon as the provider has answered: the slot is for requests in
            # flight, and the next one need not wait for this one's record.
            self._in_flight.release()
        await self._records.submit(results)
        if any(r.decision is Decision.RETRY and r.retry_at <= time.time() for r in results):
            self.wake()  # a failover or a new sender is due now, not at the next tick

    async def _exchange(
        self, account: Account, handler: ProviderHandler, messages: list[MessageRecord]
    ) -> list[AttemptResult]:
        """Send one request for claimed messages; what to record for each."""
        now = time.time()
        batch = SendBatch(
            messages=tuple(
                OutgoingSms(
                    m.id,
                    m.to,
                    m.text,
                    m.sender,
                    m.encoding,
                    m.segments,
                    validity=None if m.expires_at is None else max(1, int(m.expires_at - now)),
                )
                for m in messages
            ),
            base_url=account.base_url
            or ("" if handler.public_base_url else self._settings.base_url),
            dlr_url=callback_urls(account, self._settings.base_url)["dlr"],
        )
        try:
            request = handler.send_request(account, batch)
        except SendRefused as declined:
            answer = Answer(declined.code, declined.text, requested=False)
            return [answer.result(m.id, Decision.FAILED) for m in messages]
        if account.options.get("test_mode") and not handler.native_test_mode:
            dry_run = RecipientResult(
                Outcome.VALIDATED, error_text="test mode: the request was built, not sent"
            )
            return await self._policy.results(
                account, handler, messages, [dry_run] * len(messages), None, "", requested=False
            )
        started = time.perf_counter()
        try:
            # The answer and any error come back scrubbed of the account's secrets.
            response = await execute(self._client, request, redactor_for(account))
        except NOT_SENT as exc:
            self._metrics.provider_failed(account.provider, exc)
            self._breaker.failed(account.name)
            refused = Answer("connect_error", truncate(f"{type(exc).__name__}: {exc}"))
            return [await self._policy.retry(account, m, refused) for m in messages]
        except httpx.HTTPError as exc:
            self._metrics.provider_failed(account.provider, exc)
            self._breaker.failed(account.name)
            text = truncate(f"{type(exc).__name__}: {exc}")
            unknown = Answer("outcome_unknown", f"{text}; not resent to avoid a duplicate")
            return [
                unknown.result(m.id, Decision.UNKNOWN, ambiguity=self._policy.ambiguity)
                for m in messages
            ]
        elapsed = time.perf_counter() - started
        self._metrics.provider_answered(account.provider, elapsed, response.status_code)
        _log.info(
            "provider.response",
            account=account.name,
            provider=account.provider,
            http_status=response.status_code,
            messages=len(messages),
            latency_ms=round(elapsed * 1000, 1),
        )
        results = handler.parse_send_response(account, batch, response)
        if (
            response.status_code >= 500
            or response.status_code == 429
            or all(r.outcome is Outcome.TRANSIENT for r in results)
        ):
            self._breaker.failed(account.name)
        else:
            self._breaker.answered(account.name)
        return await self._policy.results(
            account,
            handler,
            messages,
            results,
            response.status_code,
            truncate(response.text),
        )
