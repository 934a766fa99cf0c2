"""The `smsgw` command as a user runs it: real processes, a real port."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import store_env
from tests.servers import free_socket

SMSGW = shutil.which("smsgw", path=os.path.dirname(sys.executable)) or "smsgw"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "SMSGW_DATA": str(tmp_path),
        "SMSGW_API_TOKENS": "cli-token",
        "SMSGW_LOG_FORMAT": "json",
        **store_env(),
    }


def smsgw(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SMSGW, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture
def server(env: dict[str, str]) -> Iterator[str]:
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    url = f"http://127.0.0.1:{port}"
    env["SMSGW_PUBLIC_URL"] = url
    process = subprocess.Popen(
        [SMSGW, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_send_from_the_command_line_ends_delivered_in_the_stats(
    env: dict[str, str], server: str
) -> None:
    sent = smsgw(env, "send", "+46700000001|Hello")
    assert sent.returncode == 0, sent.stderr
    [message] = json.loads(sent.stdout)["messages"]
    assert message["to"] == "+46700000001"
    headers = {"Authorization": "Bearer cli-token"}
    deadline = time.monotonic() + 15
    delivered = 0
    while time.monotonic() < deadline and not delivered:
        delivered = httpx.get(f"{server}/v1/stats", headers=headers).json()["total"]["delivered"]
        time.sleep(0.2)
    assert delivered == 1
    stats = smsgw(env, "stats")
    assert json.loads(stats.stdout)["total"]["delivered"] == 1
    history = smsgw(env, "history", "-n", "5")
    assert "delivered" in history.stdout and "+46700000001" in history.stdout


def test_serve_without_an_api_token_refuses_to_start(env: dict[str, str]) -> None:
    env["SMSGW_API_TOKENS"] = ""
    result = smsgw(env, "serve", "--port", "1")
    assert result.returncode == 2 and "SMSGW_API_TOKENS" in result.stderr


def test_a_bad_setting_stops_start_up_with_a_clear_message(env: dict[str, str]) -> None:
    env["SMSGW_LOG_FORMAT"] = "yaml"
    result = smsgw(env, "stats")
    assert result.returncode == 2 and "SMSGW_LOG_FORMAT" in result.stderr


def test_a_bad_number_on_the_command_line_is_an_error_not_a_traceback(
    env: dict[str, str],
) -> None:
    result = smsgw(env, "send", "12|Hello")
    assert result.returncode == 1 and "phone number" in result.stderr
    assert "Traceback" not in result.stderr
