"""Accounts declared in a gateways file, and account links."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from handlers import HANDLERS
from service.accounts import declared_accounts
from service.errors import SettingsError
from tests.conftest import running_gateway

GATEWAYS = """
[[account]]
name = "infobip I"
provider = "connectel"
credentials = { token = "env:TEST_CONNECTEL_TOKEN" }
sender = "IKEA"
priority = 3
logo_url = "https://example.org/logo.png"
"""


def test_the_example_gateways_file_declares_every_provider() -> None:
    text = Path("config/gateways.example.toml").read_text()
    variables = {part.split('"')[0] for part in text.split("env:")[1:]}
    env = {variable: f"secret-{n}" for n, variable in enumerate(sorted(variables))}
    accounts = declared_accounts(Path("config/gateways.example.toml"), env)
    assert {a.provider for a in accounts} == set(HANDLERS) - {"sandbox"}
    assert all(v.startswith("secret-") for a in accounts for v in a.credentials.values())


def test_a_credential_from_an_unset_variable_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "gateways.toml"
    path.write_text(GATEWAYS)
    with pytest.raises(SettingsError, match="TEST_CONNECTEL_TOKEN"):
        declared_accounts(path, {})


def test_an_invalid_declared_account_names_the_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "gateways.toml"
    path.write_text(GATEWAYS.replace('"connectel"', '"pigeon"'))
    with pytest.raises(SettingsError, match="provider"):
        declared_accounts(path, {"TEST_CONNECTEL_TOKEN": "t"})


async def test_declared_accounts_are_created_at_start_and_keep_their_callback_urls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "gateways.toml"
    path.write_text(GATEWAYS)
    monkeypatch.setenv("TEST_CONNECTEL_TOKEN", "from-env")
    async with running_gateway(tmp_path, gateways_file=str(path)) as gateway:
        first = (await gateway.api.get("/v1/accounts/infobip I")).json()
        assert first["credentials"] == {"token": "********"} and first["priority"] == 3
        assert first["logo_url"] == "https://example.org/logo.png"
    path.write_text(GATEWAYS.replace("priority = 3", "priority = 4"))
    async with running_gateway(tmp_path, gateways_file=str(path)) as gateway:
        again = (await gateway.api.get("/v1/accounts/infobip I")).json()

    def key(account: dict[str, Any]) -> str:
        return str(account["callback_urls"]["dlr"]).split("key=")[1]

    assert again["priority"] == 4 and key(again) == key(first)


async def test_account_links_must_be_http_urls(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as gateway:
        response = await gateway.api.post(
            "/v1/accounts",
            json={"name": "x", "provider": "sandbox", "signup_url": "javascript:alert(1)"},
        )
        assert response.status_code == 422 and response.json()["error"]["field"] == "signup_url"
