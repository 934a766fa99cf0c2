"""What a provider's answer means for one message: retry, fail over, fail or accept."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest

from handlers import handler_for
from service.attempt_policy import Answer, AttemptPolicy
from service.model import Account, Decision, MessageRecord, Outcome, RecipientResult, Status
from service.settings import Settings
from tests.conftest import make_settings

PRIMARY = Account("primary", "connectel", priority=10)
MESSAGE = MessageRecord(
    id="m1",
    seq=1,
    account="primary",
    to="+46700000001",
    text="hi",
    sender="IKEA",
    encoding="GSM-7",
    segments=1,
    status=Status.SENDING,
    client_ref="",
    request_id="",
    error_code="",
    error_text="",
    http_status=None,
    http_response="",
    attempts=0,
    created_at="",
    updated_at="",
    routed=True,
)


class Listed:
    def __init__(self, *accounts: Account) -> None:
        self.accounts = list(accounts)

    async def all(self) -> list[Account]:
        return sorted(self.accounts, key=lambda a: (a.priority, a.name))


async def no_client(client: str) -> tuple[str, ...] | None:
    return None


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return replace(
        make_settings(tmp_path),
        max_attempts=3,
        backoff_base=1.0,
        backoff_cap=8.0,
        retry_after_min=2.0,
        retry_after_max=60.0,
    )


async def test_a_retry_after_hint_is_held_within_its_bounds(settings: Settings) -> None:
    policy = AttemptPolicy(settings, Listed(PRIMARY), no_client)
    for asked, lowest, highest in ((3600.0, 60.0, 60.0), (0.0, 2.0, 2.0), (5.0, 5.0, 5.0)):
        before = time.time()
        result = await policy.retry(PRIMARY, MESSAGE, Answer("429", "slow down", retry_after=asked))
        assert result.decision is Decision.RETRY
        assert before + lowest <= result.retry_at <= time.time() + highest


async def test_without_a_hint_the_backoff_grows_and_stays_under_its_cap(settings: Settings) -> None:
    policy = AttemptPolicy(settings, Listed(PRIMARY), no_client)
    second = replace(MESSAGE, attempts=1)
    for _ in range(50):
        before = time.time()
        result = await policy.retry(PRIMARY, second, Answer("503", "busy"))
        assert before <= result.retry_at <= time.time() + 2.0  # base * 2 ** 1


async def test_exhausted_attempts_fail_over_when_smsgw_chose_the_account(
    settings: Settings,
) -> None:
    spare = Account("spare", "infobip", priority=20)
    policy = AttemptPolicy(settings, Listed(PRIMARY, spare), no_client)
    last = replace(MESSAGE, attempts=2)
    moved = await policy.retry(PRIMARY, last, Answer("503", "busy"))
    assert (moved.decision, moved.new_account) == (Decision.RETRY, "spare")
    named = await policy.retry(PRIMARY, replace(last, routed=False), Answer("503", "busy"))
    assert named.decision is Decision.FAILED
    assert named.error_text == "gave up after 3 attempts: busy"


async def test_failover_skips_tried_inactive_too_short_and_sandbox_accounts(
    settings: Settings,
) -> None:
    candidates = Listed(
        PRIMARY,
        Account("tried", "clickatell", priority=1),
        Account("off", "infobip", priority=2, active=False),
        Account("sandbox", "sandbox", priority=3),
        Account("next", "twilio", priority=50),
    )
    policy = AttemptPolicy(settings, candidates, no_client)
    message = replace(MESSAGE, tried=("tried",))
    assert await policy.failover_target(PRIMARY, message) == "next"
    too_long = replace(message, text="x" * (handler_for("twilio").max_text_chars + 1))
    assert await policy.failover_target(PRIMARY, too_long) == ""


async def test_a_clients_message_fails_over_only_among_the_clients_accounts(
    settings: Settings,
) -> None:
    candidates = Listed(PRIMARY, Account("other", "infobip", priority=20))
    allowed = {"shop": ("primary", "other"), "login": ("primary",), "gone": ()}

    async def accounts_of(client: str) -> tuple[str, ...] | None:
        return allowed[client]

    policy = AttemptPolicy(settings, candidates, accounts_of)
    for client, target in (("shop", "other"), ("login", ""), ("gone", "")):
        assert await policy.failover_target(PRIMARY, replace(MESSAGE, client=client)) == target


async def test_an_accepted_message_is_polled_only_where_reports_are_not_pushed(
    settings: Settings,
) -> None:
    policy = AttemptPolicy(settings, Listed(PRIMARY), no_client)
    accepted = RecipientResult(Outcome.ACCEPTED, request_ids=("R1",))
    pushed = await policy.conclude(
        PRIMARY, handler_for("connectel"), MESSAGE, accepted, Answer("", "")
    )
    assert (pushed.decision, pushed.poll_at, pushed.request_ids) == (
        Decision.ACCEPTED,
        None,
        ("R1",),
    )
    polled = await policy.conclude(
        replace(PRIMARY, provider="sms1609"),
        handler_for("sms1609"),
        MESSAGE,
        accepted,
        Answer("", ""),
    )
    assert polled.poll_at is not None


async def test_a_refused_sender_is_retried_once_with_the_fallback_sender(
    settings: Settings,
) -> None:
    account = replace(PRIMARY, fallback_sender="Shop")
    policy = AttemptPolicy(settings, Listed(account), no_client)
    refused = RecipientResult(Outcome.SENDER_REJECTED, error_code="sender")
    handler = handler_for("connectel")
    first = await policy.conclude(account, handler, MESSAGE, refused, Answer("sender", ""))
    assert (first.decision, first.new_sender) == (Decision.RETRY, "Shop")
    again = replace(MESSAGE, sender="Shop")
    second = await policy.conclude(account, handler, again, refused, Answer("sender", ""))
    assert second.decision is Decision.FAILED
