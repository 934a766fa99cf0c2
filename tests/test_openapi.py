"""The API as /openapi.json describes it, fuzzed from outside with schemathesis.

smsgw runs as its own process on loopback; schemathesis generates requests from the
document, valid and invalid, and every answer must be a documented 4xx or success,
never a 5xx. Operations that would make smsgw call a URL the fuzzer invented (an
account's base_url, a webhook's url) are left out: their traffic could leave the
machine. Their validation is fuzzed in-process below instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok

from service.accounts import account_from_body
from service.autoreply import rule_from_body
from service.errors import SmsgwError
from service.webhooks import webhook_from_body
from tests.conftest import TOKEN
from tests.servers import free_socket

# Would reach a URL the fuzzer made up, or never end (the event stream).
EXCLUDED = (
    ("POST", "/v1/accounts"),
    ("PATCH", "/v1/accounts/{name}"),
    ("POST", "/v1/webhooks"),
    ("GET", "/v1/events/stream"),
)


@pytest.fixture(scope="module")
def smsgw_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    data = tmp_path_factory.mktemp("openapi")
    env = dict(os.environ, SMSGW_DATA=str(data), SMSGW_API_TOKENS=TOKEN)
    exe = shutil.which("smsgw") or str(Path(__file__).resolve().parent.parent / ".venv/bin/smsgw")
    with (data / "stdout.log").open("wb") as log:
        process = subprocess.Popen(
            [exe, "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_until_up(url, process)
            yield url
        finally:
            process.terminate()
            process.wait(10)


def _wait_until_up(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("smsgw did not start")


def operations(url: str) -> list[Any]:
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    found = []
    for result in schema.get_all_operations():
        # An operation the document describes badly is a failure of its own.
        assert isinstance(result, Ok), result
        found.append(result.ok())
    return [op for op in found if (op.method.upper(), op.path) not in EXCLUDED]


def test_no_request_the_document_allows_or_forbids_gets_a_5xx(smsgw_url: str) -> None:
    # schemathesis' pytest plugin does not load on this pytest: the operations are
    # driven through hypothesis directly, one strategy per documented operation.
    tried = []
    for operation in operations(smsgw_url):

        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def answers_without_a_5xx(case: Any) -> None:
            response = case.call(
                base_url=smsgw_url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
            )
            case.validate_response(response, checks=[not_a_server_error])

        answers_without_a_5xx()
        tried.append(f"{operation.method.upper()} {operation.path}")
    assert "POST /v1/messages" in tried and "GET /v1/events" in tried and len(tried) >= 20


def test_the_fuzzed_smsgw_still_serves_and_counts(smsgw_url: str) -> None:
    stats = httpx.get(smsgw_url + "/v1/stats", headers={"Authorization": f"Bearer {TOKEN}"})
    assert stats.status_code == 200 and "total" in stats.json()


ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=6)
    ),
    max_leaves=25,
)
BODY_KEYS = st.sampled_from(
    ["name", "provider", "credentials", "sender", "active", "pattern", "priority", "base_url",
     "options", "url", "events", "description", "kind", "pattern", "reply", "position"]
)  # fmt: skip
BODIES = ANY_JSON | st.dictionaries(BODY_KEYS, ANY_JSON, max_size=8)


@settings(max_examples=300, deadline=None)
@given(body=BODIES)
def test_any_body_is_an_account_a_rule_and_a_webhook_or_a_clear_error(body: Any) -> None:
    for parse in (account_from_body, rule_from_body, webhook_from_body):
        try:
            parse(body)
        except SmsgwError as exc:
            assert 400 <= exc.status < 500 and exc.message
