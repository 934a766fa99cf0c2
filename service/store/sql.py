"""The Store Protocol over SQL, written once for both dialects.

`SqlStore` is a facade: each method opens a write transaction (`_write`) or reads
(`_fetchall`) and hands it to the module for that concern: `accounts`, `clients`,
`usage` (clients' quotas and rate limits), `lifecycle` (a message from queued to
concluded, and polls), `reports`, `inbox` (inbound, auto-reply rules, opt-outs),
`webhooks`, `sessions` (the console's) and `queries`.
Those functions never call back into the store. A backend (sqlite.py, postgres.py)
supplies connections, transactions and migrations through a `Tx`, and which stored
events a reader may see yet.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar, TypeVar

from service import model
from service.callback_records import CallbackAttempt, CallbackDue, CallbackRecord
from service.principals import Client, NewKey, Principal
from service.quotas import Charge, Usage
from service.sealing import Sealer
from service.store import (
    accounts,
    callback_inbox,
    clients,
    inbox,
    lifecycle,
    polls,
    queries,
    reports,
    sessions,
    status_callbacks,
    usage,
    webhooks,
)
from service.store.protocol import EventSink, InboundPlanner
from service.store.tx import Row, Tx

__all__ = ["Row", "SqlStore", "Tx"]

T = TypeVar("T")


class SqlStore(ABC):
    """Everything of the Store Protocol but connections, transactions and migrations."""

    VISIBLE_EVENTS: ClassVar[str] = ""
    """ANDed into reads of events by id: hides events that a transaction still running
    could yet precede, so that a reader's cursor never passes an id not yet committed."""

    def __init__(self, on_events: EventSink | None, sealer: Sealer | None = None) -> None:
        self._on_events = on_events or (lambda events: None)
        # Without a sealer (stores the tests open directly) credentials stay plain JSON.
        self._sealer = sealer

    @staticmethod
    async def _work(tx: Tx, work: Callable[[Tx], Awaitable[T]]) -> T:
        """`work`, and then, in its transaction, what every write transaction adds: the
        status callbacks of the status changes it made."""
        result = await work(tx)
        await status_callbacks.queue(tx)
        return result

    @abstractmethod
    async def _write(self, work: Callable[[Tx], Awaitable[T]]) -> T:
        """Run `work` in a transaction and commit it; events reach the sink after."""

    @abstractmethod
    async def _fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[Row]:
        """A read outside any write transaction."""

    # -- accounts --------------------------------------------------------------

    async def create_account(self, account: model.Account) -> None:
        await self._write(lambda tx: accounts.create(tx, account, self._sealer))

    async def get_account(self, name: str) -> model.Account | None:
        return await accounts.get(self._fetchall, name, self._sealer)

    async def list_accounts(self) -> list[model.Account]:
        return await accounts.list_all(self._fetchall, self._sealer)

    async def update_account(self, account: model.Account) -> None:
        await self._write(lambda tx: accounts.update(tx, account, self._sealer))

    async def delete_account(self, name: str) -> bool:
        return await self._write(lambda tx: accounts.delete(tx, name))

    # -- clients ---------------------------------------------------------------

    async def create_client(self, client: Client, key: NewKey) -> None:
        await self._write(lambda tx: clients.create(tx, client, key, self._sealer))

    async def get_client(self, name: str) -> Client | None:
        return await clients.get(self._fetchall, name, self._sealer)

    async def list_clients(self) -> list[Client]:
        return await clients.list_all(self._fetchall, self._sealer)

    async def update_client(self, client: Client) -> bool:
        return await self._write(lambda tx: clients.update(tx, client))

    async def delete_client(self, name: str) -> bool:
        return await self._write(lambda tx: clients.delete(tx, name))

    async def add_client_key(self, client: str, key: NewKey) -> bool:
        return await self._write(lambda tx: clients.add_key(tx, client, key))

    async def revoke_client_key(self, client: str, key_id: str) -> bool:
        return await self._write(lambda tx: clients.revoke_key(tx, client, key_id))

    async def principal_for(self, digest: str) -> Principal | None:
        return await clients.principal(self._fetchall, digest)

    async def touch_client_keys(self, used: Sequence[tuple[str, str]]) -> None:
        await self._write(lambda tx: clients.touch_keys(tx, used))

    async def client_usage(self, names: Sequence[str], at: float) -> dict[str, Usage]:
        return await usage.current(self._fetchall, names, at)

    # -- messages --------------------------------------------------------------

    async def enqueue(
        self,
        messages: Sequence[model.NewMessage],
        response: Mapping[str, Any],
        idempotency: tuple[str, str] | None = None,
        charge: Charge | None = None,
    ) -> Mapping[str, Any]:
        return await self._write(
            lambda tx: lifecycle.enqueue(tx, messages, response, idempotency, charge)
        )

    async def get_message(self, message_id: str) -> model.MessageRecord | None:
        return await queries.get_message(self._fetchall, message_id)

    async def message_events(self, message_id: str) -> list[model.Event]:
        return await queries.message_events(self._fetchall, message_id)

    async def events_after(self, after: int, limit: int) -> list[model.Event]:
        return await queries.events_after(self._fetchall, after, limit, self.VISIBLE_EVENTS)

    async def list_messages(
        self, filters: model.MessageFilter, limit: int, before_seq: int | None
    ) -> list[model.MessageRecord]:
        return await queries.list_messages(self._fetchall, filters, limit, before_seq)

    # -- outbox ----------------------------------------------------------------

    async def due_messages(
        self, now: float, limit: int, priorities: Sequence[model.Priority] = tuple(model.Priority)
    ) -> list[model.MessageRecord]:
        return await queries.due_messages(self._fetchall, now, limit, priorities)

    async def claim(self, message_ids: Sequence[str], now: float, lease: float) -> list[str]:
        return await self._write(lambda tx: lifecycle.claim(tx, message_ids, now, lease))

    async def release(self, message_ids: Sequence[str]) -> None:
        await self._write(lambda tx: lifecycle.release(tx, message_ids))

    async def expire_claims(self, now: float, ambiguity: model.Ambiguity | None = None) -> int:
        unknown = ambiguity or model.Ambiguity()
        return await self._write(lambda tx: lifecycle.expire_claims(tx, now, unknown))

    async def conclude_unresolved(self, now: float, limit: int = 500) -> int:
        return await self._write(lambda tx: lifecycle.conclude_unresolved(tx, now, limit))

    async def expire_unsent(self, now: float, limit: int = 500) -> int:
        return await self._write(lambda tx: lifecycle.expire_unsent(tx, now, limit))

    async def cancel(self, message_id: str) -> model.Status | None:
        return await self._write(lambda tx: lifecycle.cancel(tx, message_id))

    async def record_attempts(self, results: Sequence[model.AttemptResult]) -> None:
        await self._write(lambda tx: lifecycle.record_attempts(tx, results))

    # -- polling ---------------------------------------------------------------

    async def due_polls(self, now: float, limit: int, lease: float) -> list[model.PollDue]:
        if not await polls.any_poll_due(self._fetchall, now):
            return []
        return await self._write(lambda tx: polls.claim_polls(tx, now, limit, lease))

    async def reschedule_poll(self, message_id: str, due_at: float | None) -> None:
        await self._write(lambda tx: polls.reschedule_poll(tx, message_id, due_at))

    # -- reports ---------------------------------------------------------------

    async def apply_report(
        self, account: str, report: model.Report, key: tuple[str, str]
    ) -> model.ReportOutcome:
        return await self._write(lambda tx: reports.apply_report(tx, account, report, key))

    # -- the callback inbox ----------------------------------------------------

    async def append_inbox(self, entries: Sequence[model.InboxEntry]) -> None:
        await self._write(lambda tx: callback_inbox.append(tx, entries))

    async def apply_inbox(self, limit: int) -> int:
        return await self._write(lambda tx: callback_inbox.apply_pending(tx, limit))

    async def replay_inbox(self, ids: Sequence[int]) -> int:
        return await self._write(lambda tx: callback_inbox.replay(tx, ids))

    async def prune_inbox(self, before: float) -> int:
        return await self._write(lambda tx: callback_inbox.prune(tx, before))

    async def inbox_depth(self) -> tuple[int, float | None]:
        return await callback_inbox.gauges(self._fetchall)

    async def list_inbox(
        self, filters: model.InboxFilter, after: int, limit: int, unmatched_before: float
    ) -> list[model.InboxRecord]:
        return await callback_inbox.select(self._fetchall, filters, after, limit, unmatched_before)

    async def inbox_ids(
        self, filters: model.InboxFilter, after: int, limit: int, unmatched_before: float
    ) -> list[int]:
        return await callback_inbox.select_ids(
            self._fetchall, filters, after, limit, unmatched_before
        )

    # -- inbound ---------------------------------------------------------------

    async def receive_inbound(
        self, account: str, inbound: model.InboundSms, replies_since: str, plan: InboundPlanner
    ) -> model.InboundResult:
        return await self._write(
            lambda tx: inbox.receive_inbound(tx, account, inbound, replies_since, plan)
        )

    async def list_inbound(self, limit: int, before_id: int | None) -> list[model.InboundRecord]:
        return await inbox.list_inbound(self._fetchall, limit, before_id)

    async def adopt_request_id(
        self, account: str, message_id: str, request_id: str, key: tuple[str, str]
    ) -> bool:
        return await self._write(
            lambda tx: inbox.adopt_request_id(tx, account, message_id, request_id, key)
        )

    # -- auto-reply rules and the suppression list ----------------------------------

    async def list_rules(self) -> list[model.AutoReplyRule]:
        return await inbox.list_rules(self._fetchall)

    async def put_rule(self, rule: model.AutoReplyRule) -> bool:
        return await self._write(lambda tx: inbox.put_rule(tx, rule))

    async def delete_rule(self, name: str) -> bool:
        return await self._write(lambda tx: inbox.delete_rule(tx, name))

    async def suppressed(self, numbers: Sequence[str]) -> set[str]:
        return await inbox.suppressed(self._fetchall, numbers)

    async def suppress(self, number: str, keyword: str, account: str) -> bool:
        return await self._write(lambda tx: inbox.suppress(tx, number, keyword, account))

    async def unsuppress(self, number: str) -> bool:
        return await self._write(lambda tx: inbox.unsuppress(tx, number))

    async def list_suppressions(self) -> list[model.Suppression]:
        return await inbox.list_suppressions(self._fetchall)

    # -- counters and the console's chart ---------------------------------------------

    async def stats(self, unmatched_before: str) -> model.Stats:
        return await queries.stats(self._fetchall, unmatched_before)

    async def client_counters(self, client: str) -> model.Counters:
        return await queries.client_counters(self._fetchall, client)

    async def derive_counters(self, owner: str = "account") -> dict[str, model.Counters]:
        return await queries.derive_counters(self._fetchall, owner)

    async def final_by_hour(self, since: str) -> list[tuple[str, model.Status, int]]:
        return await queries.final_by_hour(self._fetchall, since)

    # -- webhooks --------------------------------------------------------------

    async def create_webhook(self, webhook: model.NewWebhook) -> model.Webhook:
        return await self._write(lambda tx: webhooks.create(tx, webhook))

    async def list_webhooks(self) -> list[model.Webhook]:
        return await webhooks.select(self._fetchall, "", ())

    async def get_webhook(self, webhook_id: str) -> model.Webhook | None:
        found = await webhooks.select(self._fetchall, "WHERE w.id = ?", (webhook_id,))
        return found[0] if found else None

    async def delete_webhook(self, webhook_id: str) -> bool:
        return await self._write(lambda tx: webhooks.delete(tx, webhook_id))

    async def fan_out_webhooks(self, now: float, limit: int) -> int:
        if not await webhooks.any_behind(self._fetchall):
            return 0
        return await self._write(lambda tx: webhooks.fan_out(tx, now, limit, self.VISIBLE_EVENTS))

    async def claim_webhook_deliveries(
        self, now: float, lease: float, limit: int
    ) -> list[model.WebhookDelivery]:
        if not await webhooks.any_delivery_due(self._fetchall, now):
            return []
        return await self._write(lambda tx: webhooks.claim_deliveries(tx, now, lease, limit))

    async def record_webhook_attempt(self, attempt: model.WebhookAttempt) -> None:
        await self._write(lambda tx: webhooks.record_attempt(tx, attempt))

    # -- status callbacks --------------------------------------------------------

    async def claim_status_callbacks(
        self, now: float, lease: float, limit: int, gateway_secret: str
    ) -> list[CallbackDue]:
        if not await status_callbacks.any_due(self._fetchall, now):
            return []
        return await self._write(
            lambda tx: status_callbacks.claim(tx, now, lease, limit, self._sealer, gateway_secret)
        )

    async def record_status_callback(self, attempt: CallbackAttempt) -> None:
        await self._write(lambda tx: status_callbacks.record(tx, attempt))

    async def status_callbacks(self, message_id: str) -> list[CallbackRecord]:
        return await status_callbacks.for_message(self._fetchall, message_id)

    # -- console sessions ------------------------------------------------------

    async def start_session(
        self, session_id: str, token_id: str, expires_at: int, now: int
    ) -> None:
        await self._write(lambda tx: sessions.start(tx, session_id, token_id, expires_at, now))

    async def session_live(self, session_id: str, token_id: str, now: int) -> bool:
        return await sessions.is_live(self._fetchall, session_id, token_id, now)

    async def end_session(self, session_id: str) -> bool:
        return await self._write(lambda tx: sessions.end(tx, session_id))

    # -- metrics ---------------------------------------------------------------

    async def gauges(self) -> model.Gauges:
        return await queries.gauges(self._fetchall)
