"""The outbox worker: sends queued messages to their providers.

Each pass reads the due messages, groups them per account into provider requests
(batch or loop), claims them a concurrency's worth of requests at a time (one
transaction; the next lot is claimed while these wait for their request slots),
sends each request in a slot of its own and records what the provider said, the
results of requests that end together in one transaction (`Coalescer`). A pass ends
once its requests have ended and been recorded: a pass's bulk requests go one per
account and content, not `concurrency` passes' worth at once, which providers (and
the scale-out test's fake, whose reports then lagged its answers past the request
timeout) would take as a burst.

The claim is committed before the request, so a process that dies mid-send leaves a
claim whose lease expires into `outcome_unknown` rather than a blind resend; for the
same reason a request that may have reached the provider (read timeout, reset
connection) is never retried. Claims never wait long for a slot: at most twice
`concurrency` requests are claimed and not yet started (`_ahead`), so a claim is at
most about two request timeouts old when its request starts, well inside its lease.

Only failures that prove the provider did not take the message are retried:
connection refused or timed out while connecting, 429, 503, and providers' own "try
later" answers. Any other 5xx (a proxy's 500, 502 or 504 included) leaves the outcome
unknown, like a read timeout: the message waits for a report or the conclusion
(`service.ambiguous`).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import deque
from collections.abc import Coroutine, Iterator, Sequence
from dataclasses import dataclass, replace
from itertools import groupby
from typing import Any

import httpx
import structlog

from handlers import handler_for
from handlers.base import ProviderHandler, SendRefused
from service import reconcile
from service.accounts import AccountDirectory, callback_urls, redactor_for
from service.breaker import CircuitBreaker
from service.coalesce import Coalescer
from service.metrics import Metrics
from service.model import (
    Account,
    Ambiguity,
    AttemptResult,
    Decision,
    MessageRecord,
    Outcome,
    OutgoingSms,
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
        # Requests claimed that have not started yet, over all accounts: the lot
        # waiting for slots and the next lot, claimed meanwhile.
        self._ahead = asyncio.Semaphore(2 * settings.concurrency)
        self._sending: set[asyncio.Task[None]] = set()
        self._records = Coalescer(store.record_attempts)
        self._breaker = CircuitBreaker(settings.breaker_threshold, settings.breaker_cooldown)
        self._next_sweep = 0.0
        self._ambiguity = Ambiguity(
            settings.ambiguous_conclude_after, settings.ambiguous_match_window
        )

    def wake(self) -> None:
        """New work was queued by this process: start a pass now, not at the next tick."""
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
            await self._store.expire_claims(time.time(), self._ambiguity)
            await self._store.conclude_unresolved(time.time())
            self._next_sweep = time.time() + self._settings.lease_seconds / 4
        return await self.run_once()

    async def _idle(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), self._settings.poll_interval)
        self._wakeup.clear()

    async def run_once(self) -> bool:
        """One pass over the due outbox; True when there was work."""
        due = await self._store.due_messages(time.time(), self._settings.batch_size)
        if not due:
            return False
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
        pending = deque(self._batches(account, handler, messages))
        claimed: deque[list[MessageRecord]] = deque()
        ahead: asyncio.Task[deque[list[MessageRecord]]] | None = None
        try:
            claimed = await self._claim_next(bucket, pending)
            while claimed:
                # The next requests are claimed while these wait for their slots.
                ahead = asyncio.create_task(self._claim_next(bucket, pending)) if pending else None
                open_until = await self._start(account, handler, claimed)
                claimed.extend(await ahead if ahead else ())
                ahead = None
                if open_until is not None:
                    won = await self._claim_messages([m for batch in pending for m in batch])
                    pending.clear()
                    await self._postpone(
                        account, [*(m for batch in claimed for m in batch), *won], open_until
                    )
                    for _ in claimed:
                        self._ahead.release()
                    claimed.clear()
        finally:
            # Stopped (or failed) with requests claimed but not started: they were
            # not sent, so they go back to the outbox rather than wait out the lease.
            if ahead is not None:
                with contextlib.suppress(Exception):
                    claimed.extend(await ahead)
            for _ in claimed:
                self._ahead.release()
            unsent = [m.id for batch in claimed for m in batch]
            if unsent:
                await self._store.release(unsent)

    async def _claim_next(
        self, bucket: TokenBucket, pending: deque[list[MessageRecord]]
    ) -> deque[list[MessageRecord]]:
        """Take from `pending` the next requests to claim, as many as are allowed to
        wait for a slot and as the rate limit allows now (at least one), and claim
        their messages in one transaction; the requests, each keeping its place in
        `_ahead`, with only the messages this process won."""
        taken = [pending.popleft()]
        await bucket.acquire(len(taken[0]))
        await self._ahead.acquire()
        while (
            pending
            and len(taken) < self._settings.concurrency
            and not self._ahead.locked()
            and bucket.try_acquire(len(pending[0]))
        ):
            await self._ahead.acquire()  # free: returns at once
            taken.append(pending.popleft())
        try:
            won = {m.id for m in await self._claim_messages([m for b in taken for m in b])}
        except BaseException:
            for _ in taken:
                self._ahead.release()
            raise
        claimed: deque[list[MessageRecord]] = deque()
        for batch in taken:
            mine = [m for m in batch if m.id in won]
            if mine:
                claimed.append(mine)
            else:
                self._ahead.release()
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

    async def _start(
        self, account: Account, handler: ProviderHandler, claimed: deque[list[MessageRecord]]
    ) -> float | None:
        """Start the claimed requests, each once it has a slot; when the account's
        circuit is found open, stop and say until when (the rest stay in `claimed`)."""
        while claimed:
            # Taken before the breaker is read: a request that waited for a slot sees
            # the failures of the requests it waited for.
            await self._in_flight.acquire()
            # Checked before each request: an outage found mid-pass stops the pass.
            open_until = self._breaker.open_until(account.name)
            if open_until is not None:
                self._in_flight.release()
                return open_until
            batch = claimed.popleft()
            self._ahead.release()
            if self._breaker.half_open(account.name):
                # The probe goes alone: its answer decides whether the rest are sent.
                await self._send_claimed(account, handler, batch)
                continue
            self._launch(self._send_claimed(account, handler, batch))
        return None

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

        def same_content(m: MessageRecord) -> tuple[str, str]:
            return (m.text, m.sender)

        for _, group in groupby(sorted(messages, key=same_content), key=same_content):
            alike = list(group)
            for start in range(0, len(alike), handler.max_batch):
                yield alike[start : start + handler.max_batch]

    async def _fail_unsendable(self, messages: Sequence[MessageRecord], reason: str) -> None:
        results = []
        for message in await self._claim_messages(messages):
            answer = _Answer(
                reason, f"{reason.replace('_', ' ')}: {message.account}", requested=False
            )
            gone = Account(name=message.account, provider="")
            target = await self._failover_target(gone, message)
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
        answer = _Answer(
            "circuit_open",
            f"{account.name} failed {self._settings.breaker_threshold} requests in a row; "
            "not tried until its circuit's next probe",
            requested=False,
        )
        results = []
        for message in messages:
            target = await self._failover_target(account, message)
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
        batch = SendBatch(
            messages=tuple(
                OutgoingSms(m.id, m.to, m.text, m.sender, m.encoding, m.segments) for m in messages
            ),
            base_url=account.base_url
            or ("" if handler.public_base_url else self._settings.base_url),
            dlr_url=callback_urls(account, self._settings.base_url)["dlr"],
        )
        try:
            request = handler.send_request(account, batch)
        except SendRefused as declined:
            answer = _Answer(declined.code, declined.text, requested=False)
            return [answer.result(m.id, Decision.FAILED) for m in messages]
        if account.options.get("test_mode") and not handler.native_test_mode:
            dry_run = RecipientResult(
                Outcome.VALIDATED, error_text="test mode: the request was built, not sent"
            )
            return await self._results(
                account, handler, messages, [dry_run] * len(messages), None, "", requested=False
            )
        started = time.perf_counter()
        try:
            # The answer and any error come back scrubbed of the account's secrets.
            response = await execute(self._client, request, redactor_for(account))
        except NOT_SENT as exc:
            self._metrics.provider_failed(account.provider, exc)
            self._breaker.failed(account.name)
            refused = _Answer("connect_error", truncate(f"{type(exc).__name__}: {exc}"))
            return [await self._retry(account, m, refused) for m in messages]
        except httpx.HTTPError as exc:
            self._metrics.provider_failed(account.provider, exc)
            self._breaker.failed(account.name)
            text = truncate(f"{type(exc).__name__}: {exc}")
            unknown = _Answer("outcome_unknown", f"{text}; not resent to avoid a duplicate")
            return [
                unknown.result(m.id, Decision.UNKNOWN, ambiguity=self._ambiguity) for m in messages
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
        return await self._results(
            account,
            handler,
            messages,
            results,
            response.status_code,
            truncate(response.text),
        )

    async def _results(
        self,
        account: Account,
        handler: ProviderHandler,
        messages: Sequence[MessageRecord],
        results: Sequence[RecipientResult],
        http_status: int | None,
        http_response: str,
        *,
        requested: bool = True,
    ) -> list[AttemptResult]:
        return [
            await self._conclude(
                account,
                handler,
                message,
                result,
                _Answer(
                    result.error_code,
                    result.error_text,
                    http_status,
                    http_response,
                    result.retry_after,
                    requested,
                ),
            )
            for message, result in zip(messages, results, strict=True)
        ]

    async def _conclude(
        self,
        account: Account,
        handler: ProviderHandler,
        message: MessageRecord,
        result: RecipientResult,
        answer: _Answer,
    ) -> AttemptResult:
        outcome = result.outcome
        ids = {
            "request_ids": result.request_ids,
            "keys": tuple(
                reconcile.match_key(rid, message.to, handler.shares_request_ids)
                for rid in result.request_ids
            ),
        }
        if outcome is Outcome.ACCEPTED and result.request_ids:
            polled = not handler.pushes_reports or bool(account.options.get("poll"))
            return answer.result(
                message.id,
                Decision.ACCEPTED,
                status=result.status,
                poll_at=time.time() + self._settings.poll_first_after if polled else None,
                **ids,
            )
        if outcome is Outcome.TRANSIENT:
            return await self._retry(account, message, answer)
        if outcome is Outcome.UNKNOWN:
            return replace(answer, code=answer.code or "outcome_unknown").result(
                message.id, Decision.UNKNOWN, ambiguity=self._ambiguity
            )
        if outcome is Outcome.SENDER_REJECTED and account.fallback_sender not in (
            "",
            message.sender,
        ):
            return answer.result(
                message.id, Decision.RETRY, new_sender=account.fallback_sender, retry_at=time.time()
            )
        if outcome is Outcome.ACCOUNT_ERROR:
            target = await self._failover_target(account, message)
            if target:
                return answer.result(
                    message.id, Decision.RETRY, new_account=target, retry_at=time.time()
                )
        if outcome is Outcome.VALIDATED:
            answer = replace(
                answer,
                code=answer.code or "test_mode",
                text=answer.text or "validated by the provider in test mode",
            )
        elif outcome is Outcome.ACCEPTED:
            answer = replace(answer, text=answer.text or "accepted without a request ID")
        return replace(answer, code=answer.code or outcome.value).result(
            message.id, Decision.FAILED, **ids
        )

    async def _retry(
        self, account: Account, message: MessageRecord, answer: _Answer
    ) -> AttemptResult:
        """Back off and try again; once attempts run out, fail over or fail."""
        attempts = message.attempts + 1  # the record predates this attempt's claim
        if attempts >= self._settings.max_attempts:
            target = await self._failover_target(account, message)
            if target:
                return answer.result(
                    message.id, Decision.RETRY, new_account=target, retry_at=time.time()
                )
            return replace(
                answer,
                code=answer.code or "retries_exhausted",
                text=f"gave up after {attempts} attempts: {answer.text}",
            ).result(message.id, Decision.FAILED)
        ceiling = min(self._settings.backoff_cap, self._settings.backoff_base * 2 ** (attempts - 1))
        delay = random.uniform(0, ceiling)
        if answer.retry_after is not None:
            # The provider's hint is honoured only within bounds: an hour-long (or
            # endless) Retry-After must not park a message for good.
            asked = min(
                max(answer.retry_after, self._settings.retry_after_min),
                self._settings.retry_after_max,
            )
            delay = max(delay, asked)
        return answer.result(message.id, Decision.RETRY, retry_at=time.time() + delay)

    async def _failover_target(self, account: Account, message: MessageRecord) -> str:
        """The next active account by priority that this message has not tried.

        Only messages whose account smsgw chose move: a client that named an account
        asked for that account. The sandbox is never a target for real traffic.
        """
        if not message.routed:
            return ""
        tried = {*message.tried, account.name}
        allowed = await self._allowed_accounts(message)
        for candidate in await self._directory.all():
            fits = len(message.text) <= handler_for(candidate.provider).max_text_chars
            # Real traffic never lands on the sandbox, which would report it delivered.
            pretend = candidate.provider == "sandbox" and account.provider != "sandbox"
            mine = allowed is None or candidate.name in allowed
            if candidate.active and candidate.name not in tried and fits and mine and not pretend:
                return candidate.name
        return ""

    async def _allowed_accounts(self, message: MessageRecord) -> tuple[str, ...] | None:
        """The accounts a client's message may move to; a removed client's, none.
        Read from the store: failover is rare, and the client's accounts may change."""
        if message.client is None:
            return None
        client = await self._store.get_client(message.client)
        return client.accounts if client is not None else ()


@dataclass(frozen=True, slots=True)
class _Answer:
    """What a provider (or the network) said about one message, to be recorded."""

    code: str
    text: str
    http_status: int | None = None
    http_response: str = ""
    retry_after: float | None = None
    requested: bool = True
    """False when no request went out for it (an open circuit, a refused batch)."""

    def result(self, message_id: str, decision: Decision, **details: Any) -> AttemptResult:
        return AttemptResult(
            message_id,
            decision,
            error_code=self.code,
            error_text=self.text,
            http_status=self.http_status,
            http_response=self.http_response,
            requested=self.requested,
            **details,
        )
