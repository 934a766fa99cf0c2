"""The API as /openapi.json describes it, fuzzed from outside with schemathesis.

smsgw runs as its own process on loopback, once per store (SQLite and PostgreSQL);
schemathesis generates requests for EVERY documented operation from the document,
valid and invalid, with hostile values mixed in (digits that are not ASCII, integers
of 5,000 digits, NaN and Infinity in JSON bodies), and every answer must be a 4xx or
a success, never a 5xx. Explicit cases then send each operation the inputs a
generator would rarely find: 30,000 `[`, NaN literals, huge integers and foreign
digits in every numeric parameter, which must be refused with a 4xx.

Operations that make smsgw call out (an account's base_url, a webhook's url, a
balance) are fuzzed too: the process runs behind a proxy that is a closed loopback
port, so nothing a fuzzer invented can leave the machine.
"""

from __future__ import annotations

import json
import math
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
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok

from service.accounts import account_from_body
from service.autoreply import rule_from_body
from service.errors import SmsgwError
from service.settings import DEFAULT_FILE
from service.webhooks import webhook_from_body
from tests.conftest import TOKEN
from tests.databases import TestDatabase
from tests.servers import free_socket

AUTH = {"Authorization": f"Bearer {TOKEN}"}
STREAM = ("GET", "/v1/events/stream")
"""Answers with a stream that lasts minutes: judged by its status line alone."""
EXAMPLES = 60
"""Per operation, store and mode, so 240 a run for each operation; lower than the 100
it was, so that the suite stays within its time budget as operations are added."""


def _closed_port() -> int:
    sock = free_socket()
    port: int = sock.getsockname()[1]
    sock.close()
    return port


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def smsgw_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    database_url, schema = "", ""
    database: TestDatabase | None = None
    if request.param == "postgres":
        database = request.getfixturevalue("postgres")
        if database.skip_reason:
            pytest.skip(database.skip_reason)
        schema, database_url = database.new_schema()
    port = _closed_port()
    data = tmp_path_factory.mktemp(f"openapi-{request.param}")
    # Every outgoing request goes to a proxy that is not there: a base_url or webhook
    # URL the fuzzer made up fails on loopback instead of reaching it.
    nowhere = f"http://127.0.0.1:{_closed_port()}"
    proxies = {k: nowhere for k in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")}
    env = dict(
        os.environ,
        SMSGW_CONFIG=str(unthrottled(data)),
        SMSGW_DATA=str(data),
        SMSGW_API_TOKENS=TOKEN,
        DATABASE_URL=database_url,
        NO_PROXY="127.0.0.1,localhost",
        **proxies,
        **{k.lower(): v for k, v in proxies.items()},
    )
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
            if database is not None:
                database.drop_schema(schema)


def unthrottled(folder: Path) -> Path:
    """The default settings without the failed-authentication throttle: the fuzzer is
    one client that fails authentication on purpose, and would otherwise fuzz nothing
    but 429s after its twentieth try (the throttle has tests of its own)."""
    text = DEFAULT_FILE.read_text(encoding="utf-8")
    assert "\nauth_failure_limit = 20 " in text
    path = folder / "settings.toml"
    path.write_text(
        text.replace("\nauth_failure_limit = 20 ", "\nauth_failure_limit = 100000000 ", 1),
        encoding="utf-8",
    )
    return path


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
    return found


# -- hostile values mixed into what schemathesis generates ----------------------------

FOREIGN_DIGITS = ("\u00b2", "\u0663", "\uff13", "\u0661", "1\u0663")
"""Superscript two, Arabic-Indic three, fullwidth three, Arabic-Indic one, a mixture."""
HUGE = "9" * 5000
NUMERIC_PARAMETERS = {"limit", "cursor", "after", "id"}
"""Parameters read as numbers (cursor, after and a webhook's id are digits in a string)."""
HOSTILE_TEXT = st.sampled_from([*FOREIGN_DIGITS, HUGE, "-" + HUGE, "NaN", "Infinity", "1e999"])
NON_FINITE = st.sampled_from([math.nan, math.inf, -math.inf])


def with_non_finite(body: Any, value: float) -> Any:
    """The body with its first number (or, lacking one, a new field) made non-finite;
    requests writes it as a NaN or Infinity literal."""
    if isinstance(body, dict):
        for key, item in body.items():
            if isinstance(item, int | float) and not isinstance(item, bool):
                return {**body, key: value}
        return {**body, "priority": value}
    return body


def hostile(case: Any, data: st.DataObject) -> bytes | None:
    """Now and then, one numeric parameter made hostile in place, or the body's first
    number made non-finite: then the JSON text to send instead (requests refuses to
    write NaN, a client of smsgw need not)."""
    if not data.draw(st.booleans()):
        return None
    numeric = [n for n in (case.query or {}) if n in NUMERIC_PARAMETERS]
    numeric += [n for n in (case.path_parameters or {}) if n in NUMERIC_PARAMETERS]
    if numeric:
        name = data.draw(st.sampled_from(numeric))
        target = case.query if name in (case.query or {}) else case.path_parameters
        target[name] = data.draw(HOSTILE_TEXT)
    elif isinstance(case.body, dict):
        return json.dumps(with_non_finite(case.body, data.draw(NON_FINITE))).encode()
    return None


def call(case: Any, url: str, body: bytes | None) -> None:
    if body is not None:
        answer = httpx.request(
            case.method,
            url + case.formatted_path,
            params=case.query,
            content=body,
            headers={**AUTH, "content-type": "application/json"},
            timeout=10,
        )
        assert 400 <= answer.status_code < 500, (
            case.method,
            case.path,
            answer.status_code,
            body[:200],
        )
        return
    if (case.method.upper(), case.path) == STREAM:
        # Values as h11 can send them; our own token rather than a generated one.
        headers = {
            k.encode(): str(v).strip().encode()
            for k, v in (case.headers or {}).items()
            if k.lower() != "authorization"
        }
        with httpx.stream(
            "GET",
            url + case.formatted_path,
            params=case.query,
            headers={**headers, b"authorization": f"Bearer {TOKEN}".encode()},
            timeout=10,
        ) as answer:
            assert answer.status_code < 500, answer.status_code
        return
    response = case.call(base_url=url, headers=AUTH, timeout=10)
    case.validate_response(response, checks=[not_a_server_error])


def documented_and_not(operation: Any) -> st.SearchStrategy[Any]:
    """Requests the document allows, and requests it forbids (negative mode)."""
    return st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    )


@pytest.mark.parametrize("hostile_too", [False, True], ids=["as-documented", "hostile-mixed-in"])
def test_no_request_the_document_allows_or_forbids_gets_a_5xx(
    smsgw_url: str, hostile_too: bool
) -> None:
    # schemathesis' pytest plugin does not load on this pytest: the operations are
    # driven through hypothesis directly, one strategy per documented operation, and
    # every operation runs even after one has failed, so the report names them all.
    tried, failed = [], []
    for operation in operations(smsgw_url):

        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
        @given(case=documented_and_not(operation), data=st.data())
        def answers_without_a_5xx(case: Any, data: st.DataObject) -> None:
            call(case, smsgw_url, hostile(case, data) if hostile_too else None)

        name = f"{operation.method.upper()} {operation.path}"
        try:
            answers_without_a_5xx()
        # Every operation's failure (schemathesis raises groups), reported together below.
        except (Exception, BaseExceptionGroup) as exc:
            failed.append(f"{name}: {str(exc).splitlines()[0][:200]}")
        tried.append((operation.method.upper(), operation.path))
    documented = {
        (method.upper(), path)
        for path, ops in httpx.get(smsgw_url + "/openapi.json").json()["paths"].items()
        for method in ops
        if method.upper() in ("GET", "POST", "PATCH", "PUT", "DELETE")
    }
    assert set(tried) == documented and len(tried) >= 28
    assert not failed, "\n".join(failed)


# -- explicit hostile cases for every operation ---------------------------------------

HOSTILE_BODIES = {
    "30,000 [": b"[" * 30000,
    "nested objects": b'{"a":' * 20000 + b"1" + b"}" * 20000,
    "NaN": b'{"to": "+46700000001", "text": "x", "priority": NaN}',
    "Infinity": b'{"name": "a", "priority": Infinity, "position": -Infinity}',
    "5,000-digit integer": b'{"name": "a", "priority": ' + HUGE.encode() + b"}",
    "bare NaN": b"NaN",
}


def _paths(url: str) -> list[tuple[str, str, dict[str, Any]]]:
    document = httpx.get(url + "/openapi.json").json()
    return [
        (method.upper(), path, op)
        for path, ops in document["paths"].items()
        for method, op in ops.items()
        if isinstance(op, dict) and method.upper() in ("GET", "POST", "PATCH", "PUT", "DELETE")
    ]


def _fill(path: str, value: str) -> str:
    parts = path.split("/")
    return "/".join(value if p.startswith("{") and p.endswith("}") else p for p in parts)


def _answer(client: httpx.Client, method: str, path: str, **kwargs: Any) -> int:
    """The status of the answer (a stream's, without reading it), or 0 when the
    connection was dropped without one; a 4xx must say why."""
    try:
        with client.stream(method, path, **kwargs) as answer:
            if 400 <= answer.status_code < 500:
                answer.read()
                error = answer.json()["error"]
                assert error["code"] and error["message"], error
            return answer.status_code
    except httpx.TransportError:
        return 0


def test_a_hostile_body_on_any_operation_is_a_4xx(smsgw_url: str) -> None:
    failures = []
    with httpx.Client(base_url=smsgw_url, headers=AUTH, timeout=10) as client:
        for method, path, op in _paths(smsgw_url):
            if "requestBody" not in op:
                continue
            for label, body in HOSTILE_BODIES.items():
                answer = _answer(
                    client,
                    method,
                    _fill(path, "fz"),
                    content=body,
                    headers={"content-type": "application/json"},
                )
                if not 400 <= answer < 500:
                    failures.append(f"{method} {path} {label}: {answer}")
    assert not failures, "\n".join(failures)


def test_a_hostile_number_in_any_numeric_parameter_is_a_4xx(smsgw_url: str) -> None:
    failures = []
    values = [*FOREIGN_DIGITS, HUGE, "NaN", "Infinity", "-1", "1e3"]
    with httpx.Client(base_url=smsgw_url, headers=AUTH, timeout=10) as client:
        for method, path, op in _paths(smsgw_url):
            names = {p["name"]: p["in"] for p in op.get("parameters", [])}
            for name, where in names.items():
                if name not in NUMERIC_PARAMETERS or (method, path) == STREAM:
                    continue
                for value in values:
                    if where == "path":
                        answer = _answer(client, method, _fill(path, value))
                    else:
                        answer = _answer(client, method, path, params={name: value})
                    if not 400 <= answer < 500:
                        failures.append(f"{method} {path} {name}={value[:8]}: {answer}")
        for value in values:
            answer = _answer(
                client, "GET", "/v1/events/stream", headers={"Last-Event-ID": value.encode()}
            )
            if not 400 <= answer < 500:
                failures.append(f"stream Last-Event-ID={value[:8]}: {answer}")
    assert not failures, "\n".join(failures)


def test_the_fuzzed_smsgw_still_serves_and_counts(smsgw_url: str) -> None:
    stats = httpx.get(smsgw_url + "/v1/stats", headers=AUTH)
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
