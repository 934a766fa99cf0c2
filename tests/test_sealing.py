"""Credentials at rest: sealed with a key the database does not hold."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from service.errors import SettingsError
from service.sealing import KEY_FILE, Sealer, load_key


def test_sealed_credentials_open_with_the_same_key_only() -> None:
    key = Fernet.generate_key()
    sealed = Sealer(key).seal({"password": "hunter2"})
    assert "hunter2" not in sealed and sealed.startswith("fernet:")
    assert Sealer(key).unseal(sealed) == {"password": "hunter2"}
    with pytest.raises(SettingsError, match="another key"):
        Sealer(Fernet.generate_key()).unseal(sealed)


def test_credentials_stored_before_sealing_still_open() -> None:
    assert Sealer(Fernet.generate_key()).unseal('{"token": "t"}') == {"token": "t"}


def test_a_bad_key_stops_start_up_with_a_clear_message() -> None:
    with pytest.raises(SettingsError, match="SMSGW_SECRET_KEY"):
        Sealer(b"not a key")


def test_the_key_comes_from_the_environment_or_a_private_file_made_once(tmp_path: Path) -> None:
    given = Fernet.generate_key().decode()
    assert load_key(tmp_path, {"SMSGW_SECRET_KEY": given}) == given.encode()
    assert not (tmp_path / KEY_FILE).exists()
    made = load_key(tmp_path, {})
    assert load_key(tmp_path, {}) == made
    assert Sealer(made).unseal(Sealer(made).seal({"a": "b"})) == {"a": "b"}
    assert os.stat(tmp_path / KEY_FILE).st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == [KEY_FILE]
