"""What to record for a message after a provider's answer: accept, retry with backoff,
move to another account, fail, or leave the outcome unknown.

The dispatcher performs requests; this decides what each answer means for each
message, so the retry and failover rules have one home whatever the request was.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from handlers import handler_for
from handlers.base import ProviderHandler
from service import reconcile
from service.model import (
    Account,
    Ambiguity,
    AttemptResult,
    Decision,
    MessageRecord,
    Outcome,
    RecipientResult,
)
from service.settings import Settings


@dataclass(frozen=True, slots=True)
class Answer:
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


class Accounts(Protocol):
    """Where failover looks for the next account (`AccountDirectory` in the service)."""

    async def all(self) -> list[Account]: ...


ClientAccounts = Callable[[str], Awaitable["tuple[str, ...] | None"]]
"""The accounts a client's messages may use (None: any); () for a removed client."""


class AttemptPolicy:
    """The rules that turn one message's answer into its `AttemptResult`."""

    def __init__(
        self, settings: Settings, directory: Accounts, client_accounts: ClientAccounts
    ) -> None:
        self._settings = settings
        self._directory = directory
        self._client_accounts = client_accounts
        self.ambiguity = Ambiguity(
            settings.ambiguous_conclude_after, settings.ambiguous_match_window
        )

    async def results(
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
            await self.conclude(
                account,
                handler,
                message,
                result,
                Answer(
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

    async def conclude(
        self,
        account: Account,
        handler: ProviderHandler,
        message: MessageRecord,
        result: RecipientResult,
        answer: Answer,
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
            return await self.retry(account, message, answer)
        if outcome is Outcome.UNKNOWN:
            return replace(answer, code=answer.code or "outcome_unknown").result(
                message.id, Decision.UNKNOWN, ambiguity=self.ambiguity
            )
        if outcome is Outcome.SENDER_REJECTED and account.fallback_sender not in (
            "",
            message.sender,
        ):
            return answer.result(
                message.id, Decision.RETRY, new_sender=account.fallback_sender, retry_at=time.time()
            )
        if outcome is Outcome.ACCOUNT_ERROR:
            target = await self.failover_target(account, message)
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

    async def retry(
        self, account: Account, message: MessageRecord, answer: Answer
    ) -> AttemptResult:
        """Back off and try again; once attempts run out, fail over or fail."""
        attempts = message.attempts + 1  # the record predates this attempt's claim
        if attempts >= self._settings.max_attempts:
            target = await self.failover_target(account, message)
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

    async def failover_target(self, account: Account, message: MessageRecord) -> str:
        """The next active account by priority that this message has not tried.

        Only messages whose account smsgw chose move: a client that named an account
        asked for that account. A client's message moves only among the client's
        accounts. The sandbox is never a target for real traffic.
        """
        if not message.routed:
            return ""
        tried = {*message.tried, account.name}
        # Read at each failover, which is rare: the client's accounts may have changed.
        allowed = None if message.client is None else await self._client_accounts(message.client)
        for candidate in await self._directory.all():
            fits = len(message.text) <= handler_for(candidate.provider).max_text_chars
            # Real traffic never lands on the sandbox, which would report it delivered.
            pretend = candidate.provider == "sandbox" and account.provider != "sandbox"
            mine = allowed is None or candidate.name in allowed
            if candidate.active and candidate.name not in tried and fits and mine and not pretend:
                return candidate.name
        return ""
