"""Adding, changing and removing an account, and asking its provider for the balance."""

from __future__ import annotations

from typing import Any

from handlers import handler_for
from handlers.base import WireRequest
from service.accounts import account_from_body, redactor_for
from service.errors import NotFound, ProviderFailed, ValidationFailed
from service.model import Account, Balance
from service.runtime import Runtime
from service.transport import execute


async def add_account(rt: Runtime, body: Any) -> Account:
    account = account_from_body(body)
    await rt.store.create_account(account)
    rt.directory.invalidate()
    return account


async def change_account(rt: Runtime, existing: Account, body: Any) -> Account:
    """`existing` with a PATCH body applied and stored; secrets sent as the mask stay."""
    if isinstance(body, dict) and "name" in body and body["name"] != existing.name:
        raise ValidationFailed("an account cannot be renamed", field="name")
    account = account_from_body(body, existing)
    await rt.store.update_account(account)
    rt.directory.invalidate()
    return account


async def remove_account(rt: Runtime, name: str) -> None:
    await rt.store.delete_account(name)
    rt.directory.invalidate()


def balance_call(acct: Account) -> WireRequest | None:
    """The provider's balance request for this account; None where it has none."""
    handler = handler_for(acct.provider)
    return handler.balance_request(acct, acct.base_url)


async def fetch_balance(rt: Runtime, acct: Account) -> Balance:
    """Ask the provider; NotFound where it has no balance call, ProviderFailed (with the
    account's secrets scrubbed) when the call fails."""
    wire = balance_call(acct)
    if wire is None:
        raise NotFound(
            f"{acct.provider} has no balance call", field="account", code="not_supported"
        )
    redactor = redactor_for(acct)
    try:
        answer = await execute(rt.client, wire, redactor)
        return handler_for(acct.provider).parse_balance(acct, answer)
    except Exception as exc:
        # The answer was scrubbed; a handler's own exception text may still quote the
        # request, so it is scrubbed too.
        raise ProviderFailed(redactor.text(f"the provider's balance call failed: {exc}")) from None
