"""Provider credentials never show: not in logs, API answers, events, metrics, error
messages, stored provider responses, nor the database itself.

Every provider runs against its fake with the credentials its tests use, sends,
reads its balance, and then fails with a wrong secret (whose error answers and
messages are where a secret would leak). Everything smsgw said or stored is then
searched for both secrets.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests import (
    rig,
    test_clickatell,
    test_infobip,
    test_intellisoftware,
    test_routemobile,
    test_sms1609,
    test_twilio,
)
from tests.conftest import Gateway, eventually

FINAL = {"delivered", "undelivered", "expired", "rejected", "failed"}


@dataclass(frozen=True)
class Provider:
    setup: Callable[[Path], AbstractAsyncContextManager[Gateway]]
    account: str
    secret_field: str
    secret: str


def gateway_of(setup: Callable[..., AbstractAsyncContextManager[Any]]) -> Any:
    """A provider test's setup, which yields its gateway first and its fake after."""

    @asynccontextmanager
    async def just_the_gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
        async with setup(tmp_path) as given:
            yield given[0]

    return just_the_gateway


PROVIDERS = {
    "connectel": Provider(
        gateway_of(rig.connectel_setup),
        "conn",
        "token",
        rig.CONNECTEL_TOKEN,
    ),
    "routemobile": Provider(
        gateway_of(test_routemobile.routemobile_setup),
        "rm",
        "password",
        test_routemobile.PASSWORD,
    ),
    "intellisoftware": Provider(
        gateway_of(test_intellisoftware.intelli_setup),
        "intelli",
        "password",
        test_intellisoftware.PASSWORD,
    ),
    "sms1609": Provider(
        gateway_of(test_sms1609.sms1609_setup),
        "s1609",
        "password",
        test_sms1609.PASSWORD,
    ),
    "infobip": Provider(
        gateway_of(test_infobip.infobip_setup),
        "ib",
        "api_key",
        test_infobip.API_KEY,
    ),
    "clickatell": Provider(
        gateway_of(test_clickatell.clickatell_setup),
        "click",
        "api_key",
        test_clickatell.API_KEY,
    ),
    "twilio": Provider(
        gateway_of(test_twilio.twilio_setup),
        "tw",
        "auth_token",
        test_twilio.TOKEN,
    ),
}


async def final_status(gateway: Gateway, message_id: str) -> str:
    async def final() -> str:
        status: str = (await gateway.message(message_id))["status"]
        return status if status in FINAL else ""

    return await eventually(final)


async def everything_shown(gateway: Gateway, account: str) -> str:
    """Every answer the API gives about what happened, as one text."""
    texts = []
    for path in ("/v1/accounts", f"/v1/accounts/{account}", "/v1/stats", "/v1/inbound"):
        texts.append((await gateway.api.get(path)).text)
    texts.append((await gateway.api.get("/v1/events", params={"limit": 1000})).text)
    texts.append((await gateway.api.get("/metrics")).text)
    listed = (await gateway.api.get("/v1/messages", params={"limit": 1000})).json()
    texts += [(await gateway.api.get(f"/v1/messages/{m['id']}")).text for m in listed["messages"]]
    texts.append((await gateway.api.get(f"/v1/balance/{account}")).text)
    return "\n".join(texts)


def database_dump(gateway: Gateway) -> str:
    with sqlite3.connect(gateway.settings.sqlite_path) as db:
        return "\n".join(db.iterdump())


@pytest.mark.parametrize("name", sorted(PROVIDERS))
async def test_no_secret_shows_anywhere(
    name: str, tmp_path: Path, store_kind: str, capfd: pytest.CaptureFixture[str]
) -> None:
    provider = PROVIDERS[name]
    wrong = "WRONG" + provider.secret[::-1]
    async with provider.setup(tmp_path) as gateway:
        [good] = await gateway.send(to="+46700000001", text="hello", account=provider.account)
        assert await final_status(gateway, good["id"]) == "delivered"
        shown = await everything_shown(gateway, provider.account)
        patched = await gateway.api.patch(
            f"/v1/accounts/{provider.account}",
            json={"credentials": {provider.secret_field: wrong}},
        )
        assert patched.status_code == 200, patched.text
        [bad] = await gateway.send(to="+46700000002", text="hello", account=provider.account)
        assert await final_status(gateway, bad["id"]) == "failed"
        shown += await everything_shown(gateway, provider.account)
        dump = database_dump(gateway) if store_kind == "sqlite" else ""
    output = capfd.readouterr()
    for secret in (provider.secret, wrong):
        assert secret not in shown, f"{name}: the API shows a secret"
        assert secret not in output.out + output.err, f"{name}: a secret was printed"
        assert secret not in dump, f"{name}: the database holds a secret in the clear"
