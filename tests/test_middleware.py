"""The pure-ASGI guards in front of every route: auth, throttling, body limits, shedding."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from starlette.applications import Starlette
from starlette.routing import Route

from service.app import create_app
from tests.conftest import TOKEN, error_of, running_gateway


async def test_repeated_authentication_failures_are_throttled_then_forgiven(
    tmp_path: Path,
) -> None:
    async with running_gateway(tmp_path, auth_failure_limit=3, auth_failure_window=1.0) as gw:
        wrong = {"Authorization": "Bearer guess"}
        statuses = [(await gw.raw.get("/v1/stats", headers=wrong)).status_code for _ in range(3)]
        assert statuses == [401, 401, 401]
        throttled = await gw.raw.get("/v1/stats", headers=wrong)
        assert throttled.status_code == 429 and error_of(throttled)["code"] == "too_many_requests"
        assert throttled.headers["retry-after"] == "1"
        # While throttled, even the right token waits: a guesser learns nothing by timing.
        assert (await gw.api.get("/v1/stats")).status_code == 429
        await asyncio.sleep(1.1)
        assert (await gw.api.get("/v1/stats")).status_code == 200


async def test_wrong_callback_keys_count_as_failed_authentications(tmp_path: Path) -> None:
    async with running_gateway(tmp_path, auth_failure_limit=2, auth_failure_window=60.0) as gw:
        url = "/callbacks/sandbox/dlr?key=wrong"
        assert [(await gw.raw.post(url, json={})).status_code for _ in range(2)] == [403, 403]
        assert (await gw.raw.post(url, json={})).status_code == 429


async def test_successful_requests_never_count_towards_the_limit(tmp_path: Path) -> None:
    async with running_gateway(tmp_path, auth_failure_limit=2) as gw:
        for _ in range(10):
            assert (await gw.api.get("/v1/stats")).status_code == 200
        assert (await gw.raw.get("/v1/stats")).status_code == 401


async def test_requests_beyond_the_in_flight_limit_are_shed_with_retry_after(
    tmp_path: Path,
) -> None:
    async with running_gateway(tmp_path, max_in_flight=2) as gw:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        # Event streams stay open: two of them fill the limit.
        async with (
            gw.raw.stream("GET", "/v1/events/stream", headers=headers) as first,
            gw.raw.stream("GET", "/v1/events/stream", headers=headers) as second,
        ):
            assert first.status_code == second.status_code == 200
            shed = await gw.raw.get("/healthz")
            assert shed.status_code == 503 and shed.headers["retry-after"] == "1"
            assert error_of(shed)["code"] == "overloaded"

        async def served() -> bool:
            return (await gw.raw.get("/healthz")).status_code == 200

        for _ in range(50):
            if await served():
                break
            await asyncio.sleep(0.05)
        assert await served()


async def test_an_oversized_body_is_refused_before_it_is_read(tmp_path: Path) -> None:
    async with running_gateway(tmp_path, max_body=1000) as gw:
        answer = await gw.api.post("/v1/messages", content=b"x" * 1001)
        assert answer.status_code == 413 and error_of(answer)["code"] == "payload_too_large"


PUBLIC = {"/healthz", "/readyz", "/openapi.json"}


def guarded_routes(app: Starlette) -> list[tuple[str, str]]:
    """(method, path) of every API route, path parameters filled with a plausible value."""
    found = []
    for route in app.routes:
        if not isinstance(route, Route) or not route.path.startswith(("/v1/", "/metrics")):
            continue
        path = re.sub(r"\{[^}]+\}", "sandbox", route.path)
        found += [(method, path) for method in sorted(route.methods or ()) if method != "HEAD"]
    return found


async def test_every_api_route_needs_the_bearer_token(tmp_path: Path) -> None:
    async with running_gateway(tmp_path, auth_failure_limit=10_000) as gw:
        app = create_app(gw.settings)
        routes = guarded_routes(app)
        assert len(routes) >= 20 and ("GET", "/metrics") in routes
        for method, path in routes:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
                answer = await gw.raw.request(method, path, headers=headers, json={})
                assert answer.status_code == 401, (method, path, headers, answer.status_code)
                assert answer.headers["www-authenticate"] == "Bearer"
        for path in PUBLIC:
            assert (await gw.raw.get(path)).status_code == 200


async def test_every_callback_needs_its_accounts_key(tmp_path: Path) -> None:
    async with running_gateway(tmp_path, auth_failure_limit=10_000) as gw:
        for kind in ("dlr", "inbound"):
            base = f"/callbacks/sandbox/{kind}"
            for method in ("GET", "POST"):
                assert (await gw.raw.request(method, base)).status_code == 401
                assert (await gw.raw.request(method, base + "?key=wrong")).status_code == 403
                assert (await gw.raw.request(method, base + "?key=")).status_code == 401
            assert (await gw.raw.post(f"/callbacks/nobody/{kind}?key=x")).status_code == 404


async def test_failed_console_sign_ins_are_throttled_too(tmp_path: Path) -> None:
    async with running_gateway(tmp_path, auth_failure_limit=2) as gw:
        tries = [
            (await gw.raw.post("/console/login", data={"token": "guess"})).status_code
            for _ in range(3)
        ]
        assert tries == [401, 401, 429]
