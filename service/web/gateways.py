"""Gateways: the accounts table, with add, edit, delete, on/off and balance.

Validation, the mask rule and storage are the account use cases' (service.usecases.accounts,
service.accounts), shared with the JSON API; this module only turns forms into their
bodies and accounts into table rows. A secret is never put in a page: its column shows
the mask, its input starts empty, and an empty secret input keeps the stored value.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, get_args
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from handlers import HANDLERS, handler_for
from handlers.base import Column, ProviderHandler
from service.accounts import callback_urls, public_view
from service.errors import SmsgwError, Unparseable, ValidationFailed
from service.http import runtime
from service.model import Account
from service.parsing import decode_json, int_of
from service.usecases.accounts import (
    add_account,
    balance_call,
    change_account,
    fetch_balance,
    remove_account,
)
from service.web.render import client_error, form_of, page
from service.web.session import PREFIX

COLUMNS: tuple[Column, ...] = get_args(Column)
_TEXT_FIELDS = ("sender", "fallback_sender", "base_url", "description", "signup_url", "logo_url")


@dataclass(frozen=True, slots=True)
class Row:
    serial: int
    company: str
    view: dict[str, Any]
    columns: dict[str, str]
    has_balance: bool


def _row(serial: int, account: Account, public_url: str) -> Row:
    view = public_view(account, public_url)
    columns: dict[str, str] = dict.fromkeys(COLUMNS, "")
    for credential in handler_for(account.provider).credentials:
        if credential.name in view["credentials"]:
            columns[credential.column] = view["credentials"][credential.name]
    return Row(
        serial,
        _company(account.provider),
        view,
        columns,
        balance_call(account) is not None,
    )


def _company(provider: str) -> str:
    handler = HANDLERS.get(provider)
    return handler.display_name if handler else provider


def _companies() -> dict[str, str]:
    return {name: handler.display_name for name, handler in HANDLERS.items()}


def _path(name: str) -> str:
    return f"{PREFIX}/gateways/{quote(name, safe='')}"


def body_of(form: dict[str, str], handler: ProviderHandler) -> dict[str, Any]:
    """An API body from the gateway form. Empty credential inputs are left out, so that
    the API keeps what is stored (edit) or says which one is required (add)."""
    body: dict[str, Any] = {key: form.get(key, "") for key in _TEXT_FIELDS}
    body["pattern"] = form.get("pattern", "")
    body["active"] = form.get("active") == "on"
    priority = form.get("priority", "").strip()
    if priority:
        # Digits become a number; anything else goes as given for the API to refuse.
        number = int_of(priority)
        body["priority"] = priority if number is None else number
    body["credentials"] = {
        key: form[f"credentials.{key}"]
        for key in handler.credential_fields
        if form.get(f"credentials.{key}", "")
    }
    options = form.get("options", "").strip()
    try:
        body["options"] = decode_json(options, field="options") if options else {}
    except Unparseable as exc:
        raise ValidationFailed(
            f"options must be a JSON object: {exc.message}", field="options"
        ) from exc
    return body


def _form_page(
    request: Request,
    handler: ProviderHandler,
    values: dict[str, Any],
    *,
    account: Account | None,
    error: SmsgwError | None = None,
    saved: bool = False,
) -> Response:
    rt = runtime(request)
    return page(
        request,
        "gateway_form.html",
        status=error.status if error else 200,
        handler=handler,
        company=handler.display_name,
        labels={c.name: c.label for c in handler.credentials},
        values=values,
        account=account,
        row=_row(0, account, rt.settings.base_url) if account else None,
        urls=callback_urls(account, rt.settings.base_url) if account else None,
        error=error,
        saved=saved,
    )


def _values_of(account: Account) -> dict[str, Any]:
    """Form values for an account, its secrets left out."""
    secret = handler_for(account.provider).secret_fields
    values: dict[str, Any] = {key: getattr(account, key) for key in _TEXT_FIELDS}
    values.update(
        name=account.name,
        pattern=account.pattern,
        active=account.active,
        priority=str(account.priority),
        options=json.dumps(dict(account.options)) if account.options else "",
    )
    for key, value in account.credentials.items():
        values[f"credentials.{key}"] = "" if key in secret else value
    return values


def _echo(form: dict[str, str], handler: ProviderHandler) -> dict[str, Any]:
    """What the operator typed, to show again with an error; never the secrets."""
    values: dict[str, Any] = dict(form)
    values["active"] = form.get("active") == "on"
    for key in handler.secret_fields:
        values.pop(f"credentials.{key}", None)
    return values


async def gateways(request: Request) -> Response:
    rt = runtime(request)
    accounts = await rt.directory.all()
    return page(
        request,
        "gateways.html",
        rows=[_row(n, a, rt.settings.base_url) for n, a in enumerate(accounts, start=1)],
        columns=COLUMNS,
        notice=request.query_params.get("done", ""),
    )


async def new_gateway(request: Request) -> Response:
    provider = request.query_params.get("provider", "")
    if provider not in HANDLERS:
        return page(request, "gateway_pick.html", companies=_companies(), handlers=HANDLERS)
    handler = handler_for(provider)
    defaults = {"active": True, "priority": "100", "pattern": ""}
    return _form_page(request, handler, defaults, account=None)


async def create_gateway(request: Request) -> Response:
    rt = runtime(request)
    form = form_of(request)
    provider = form.get("provider", "")
    if provider not in HANDLERS:
        return page(request, "gateway_pick.html", companies=_companies(), handlers=HANDLERS)
    handler = handler_for(provider)
    try:
        body = body_of(form, handler)
        account = await add_account(
            rt, {**body, "name": form.get("name", ""), "provider": provider}
        )
    except SmsgwError as exc:
        if not client_error(exc):
            raise
        return _form_page(request, handler, _echo(form, handler), account=None, error=exc)
    return RedirectResponse(f"{_path(account.name)}?saved=1", status_code=303)


async def _existing(request: Request) -> Account | None:
    return await runtime(request).store.get_account(request.path_params["name"])


def _missing(request: Request) -> Response:
    return page(request, "error.html", status=404, title="Not found", message="No such gateway.")


async def edit_gateway(request: Request) -> Response:
    account = await _existing(request)
    if account is None:
        return _missing(request)
    handler = handler_for(account.provider)
    if request.method == "GET":
        saved = request.query_params.get("saved") == "1"
        return _form_page(request, handler, _values_of(account), account=account, saved=saved)
    form = form_of(request)
    try:
        account = await change_account(runtime(request), account, body_of(form, handler))
    except SmsgwError as exc:
        if not client_error(exc):
            raise
        values = {**_echo(form, handler), "name": account.name}
        return _form_page(request, handler, values, account=account, error=exc)
    return RedirectResponse(f"{_path(account.name)}?saved=1", status_code=303)


async def switch_gateway(request: Request) -> Response:
    """Activate or deactivate: the form says which, so a repeated POST changes nothing."""
    account = await _existing(request)
    if account is None:
        return _missing(request)
    active = form_of(request).get("active") == "1"
    await change_account(runtime(request), account, {"active": active})
    done = "activated" if active else "deactivated"
    return RedirectResponse(f"{PREFIX}/gateways?done={done}", status_code=303)


async def delete_gateway(request: Request) -> Response:
    account = await _existing(request)
    if account is None:
        return _missing(request)
    if request.method == "GET":
        return page(
            request,
            "gateway_delete.html",
            account=account,
            company=_company(account.provider),
        )
    await remove_account(runtime(request), account.name)
    return RedirectResponse(f"{PREFIX}/gateways?done=deleted", status_code=303)


async def gateway_balance(request: Request) -> Response:
    """A fragment for the balance cell, fetched after the page so a slow provider never
    holds the table up."""
    account = await _existing(request)
    if account is None:
        return _missing(request)
    try:
        answer = await fetch_balance(runtime(request), account)
    except SmsgwError as exc:
        return page(request, "_balance.html", balance=None, error=exc.message)
    return page(request, "_balance.html", balance=answer, error=None)
