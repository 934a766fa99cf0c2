"""Settings: the TOML defaults, environment overrides, and clear errors for bad values."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.errors import SettingsError
from service.settings import load_settings


def test_the_defaults_come_from_config_settings_toml() -> None:
    settings = load_settings({})
    assert settings.port == 8080 and settings.log_format == "json"
    assert settings.callback_max_body == 65536 and settings.unmatched_ttl == 72 * 3600
    assert settings.base_url == "http://127.0.0.1:8080"


def test_the_environment_overrides_the_file(tmp_path: Path) -> None:
    settings = load_settings(
        {
            "SMSGW_DATA": str(tmp_path),
            "SMSGW_API_TOKENS": "a, b,,",
            "SMSGW_PUBLIC_URL": "https://sms.example.org/",
            "SMSGW_LOG_FORMAT": "console",
        }
    )
    assert settings.sqlite_path == tmp_path / "smsgw.db"
    assert settings.api_tokens == ("a", "b")
    assert settings.base_url == "https://sms.example.org"
    assert settings.log_format == "console"


@pytest.mark.parametrize(
    ("variable", "value", "mentions"),
    [
        ("SMSGW_LOG_FORMAT", "xml", "SMSGW_LOG_FORMAT"),
        ("SMSGW_PUBLIC_URL", "sms.example.org", "SMSGW_PUBLIC_URL"),
        ("DATABASE_URL", "mysql://x", "DATABASE_URL"),
    ],
)
def test_a_bad_environment_value_is_a_clear_settings_error(
    variable: str, value: str, mentions: str
) -> None:
    with pytest.raises(SettingsError, match=mentions):
        load_settings({variable: value})


@pytest.mark.parametrize(
    ("line", "bad_line", "setting"),
    [
        ("port = 8080", 'port = "eighty"', "port"),
        ('default_region = ""', 'default_region = "XX"', "default_region"),
        ("rate_per_second = 50.0", "rate_per_second = 0", "rate_per_second"),
        # The bound on providers' Retry-After must itself be a bound.
        ("retry_after_max = 3600.0", "retry_after_max = inf", "retry_after_max"),
        ("retry_after_min = 1.0", "retry_after_min = nan", "retry_after_min"),
        ("retry_after_min = 1.0", "retry_after_min = 7200.0", "retry_after_min"),
        # A webhook delivery's lease must outlast its request, or a slow answer would
        # let a second process deliver it again.
        ("lease_seconds = 60.0", "lease_seconds = 10.0", "lease_seconds"),
    ],
)
def test_a_bad_file_value_names_the_setting(
    tmp_path: Path, line: str, bad_line: str, setting: str
) -> None:
    text = Path("config/settings.toml").read_text()
    assert line in text
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace(line, bad_line))
    with pytest.raises(SettingsError, match=setting):
        load_settings({"SMSGW_CONFIG": str(bad)})


def test_a_missing_settings_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="cannot read"):
        load_settings({"SMSGW_CONFIG": str(tmp_path / "none.toml")})


def test_the_postgresql_pool_is_sized_by_the_settings_file(tmp_path: Path) -> None:
    text = Path("config/settings.toml").read_text()
    sized = tmp_path / "pool.toml"
    sized.write_text(text.replace("pool_max = 10 ", "pool_max = 4 "))
    settings = load_settings({"SMSGW_CONFIG": str(sized)})
    assert (settings.pool_min, settings.pool_max) == (1, 4)
    sized.write_text(text.replace("pool_min = 1 ", "pool_min = 20 "))
    with pytest.raises(SettingsError, match="pool_min"):
        load_settings({"SMSGW_CONFIG": str(sized)})


def test_logs_name_a_postgresql_store_without_its_credentials() -> None:
    settings = load_settings({"DATABASE_URL": "postgresql://smsgw:s3cret@db.example:5433/sms"})
    assert settings.store_name == "postgresql://db.example:5433/sms"
