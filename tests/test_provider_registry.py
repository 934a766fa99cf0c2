"""A provider is one registration: what the console, the API and the example file show
of it comes from its handler in the registry."""

from __future__ import annotations

import tomllib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from handlers import HANDLERS
from handlers.base import Credential
from handlers.sandbox import SandboxHandler
from service.accounts import declared_accounts, example_gateways
from tests.conftest import Gateway
from tests.test_web import Console, sign_in


class PigeonHandler(SandboxHandler):
    """A throwaway provider with credential names no real one uses; its wire format
    is the sandbox's, which none of these tests reach."""

    name = "pigeon"
    display_name = "Pigeon Post"
    docs_url = "https://pigeon.example/docs"
    public_base_url = "https://pigeon.example"
    credentials = (
        Credential("client_id", "Client ID", "Username"),
        Credential("client_secret", "Client secret", "Secret key", secret=True),
    )
    example_account = "priority = 90\n"


@pytest.fixture
def pigeon(monkeypatch: pytest.MonkeyPatch) -> PigeonHandler:
    handler = PigeonHandler()
    monkeypatch.setitem(HANDLERS, handler.name, handler)
    return handler


@pytest.fixture
async def console(gateway: Gateway, pigeon: PigeonHandler) -> AsyncIterator[Console]:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as http:
        assert (await sign_in(gateway, http)).status_code == 303
        yield Console(gateway, http)


def test_the_committed_example_gateways_file_is_rendered_from_the_registry() -> None:
    assert Path("config/gateways.example.toml").read_text() == example_gateways(), (
        "render it again: python -c 'from service.accounts import example_gateways; "
        'print(example_gateways(), end="")\' > config/gateways.example.toml'
    )


def test_every_registered_provider_names_itself_and_labels_its_credentials() -> None:
    for name, handler in HANDLERS.items():
        assert handler.name == name and handler.display_name, name
        assert [c.name for c in handler.credentials] == list(handler.credential_fields), name
        assert all(c.label for c in handler.credentials), name


async def test_a_new_provider_is_accepted_and_shown_with_its_own_credentials(
    console: Console,
) -> None:
    body = {
        "name": "pigeon I",
        "provider": "pigeon",
        "credentials": {"client_id": "coo-1", "client_secret": "SECRET-seed"},
    }
    created = await console.gw.api.post("/v1/accounts", json=body)
    assert created.status_code == 201, created.text
    assert created.json()["credentials"] == {"client_id": "coo-1", "client_secret": "********"}

    picker = await console.page("/console/gateways/new")
    assert "Pigeon Post" in picker and "provider=pigeon" in picker
    form = await console.page("/console/gateways/new", provider="pigeon")
    assert "Client ID" in form and "Client secret" in form
    table = await console.page("/console/gateways")
    assert "Pigeon Post" in table and "coo-1" in table and "SECRET-seed" not in table

    added = await console.post(
        "/console/gateways/new",
        {
            "provider": "pigeon",
            "name": "pigeon II",
            "priority": "100",
            "credentials.client_id": "coo-2",
            "credentials.client_secret": "SECRET-two",
        },
    )
    assert added.status_code == 303, added.text
    assert "coo-2" in await console.page("/console/gateways")


async def test_the_openapi_document_lists_a_new_provider_and_its_credentials(
    console: Console,
) -> None:
    answer = await console.gw.api.get("/openapi.json")
    assert answer.status_code == 200
    document = answer.json()
    account = document["components"]["schemas"]["AccountInput"]["properties"]
    assert "pigeon" in account["provider"]["enum"]
    assert {"client_id", "client_secret"} <= set(account["credentials"]["properties"])


def test_the_example_gateways_file_declares_a_new_provider(
    pigeon: PigeonHandler, tmp_path: Path
) -> None:
    text = example_gateways()
    pigeon_account = tomllib.loads(text)["account"][-1]
    assert pigeon_account["provider"] == "pigeon"
    assert pigeon_account["credentials"] == {
        "client_id": "env:PIGEON_CLIENT_ID",
        "client_secret": "env:PIGEON_CLIENT_SECRET",
    }
    path = tmp_path / "gateways.toml"
    path.write_text(text)
    env = {v: "x" for v in ("PIGEON_CLIENT_ID", "PIGEON_CLIENT_SECRET")}
    env |= {part.split('"')[0]: "x" for part in text.split("env:")[1:]}
    accounts = declared_accounts(path, env)
    assert accounts[-1].credentials == {"client_id": "x", "client_secret": "x"}
