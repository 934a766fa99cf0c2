"""The pure-ASGI guards in front of every route: auth, throttling, body limits, shedding."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from starlette.applications import Starlette
from starlette.routing import Route

from service.app import create_app
from tests.conftest import TOKEN, error_of, eventually, running_gateway


async def test_repeated_wrong_tokens_are_throttled_then_forgiven(tmp_path: Path) -> None:
    async with running_gateway(tmp_path, auth_failure_limit=3, auth_failure_window=1.0) as gw:
        wrong = {"Authorization": "Bearer guess"}
        statuses = [(await gw.raw.get("/v1/stats", headers=wrong)).status_code for _ in range(3)]
        assert statuses == [401, 401, 401]
        throttled = await gw.raw.get("/v1/stats", headers=wrong)
        assert throttled.status_code == 429 and error_of(throttled)["code"] == "too_many_requests"
        assert throttled.headers["retry-after"] == "1"
        assert (await gw.raw.get("/v1/stats")).status_code == 429
        await asyncio.sleep(1.1)
        assert (await gw.raw.get("/v1/stats", headers=wrong)).status_code == 401


async def test_failures_from_an_address_refuse_only_its_wrong_credentials(
    tmp_path: Path,
) -> None:
    # The default limit, 20 a minute, and everything from 127.0.0.1, as from a provider
    # or an office behind the same address as a guesser.
    async with running_gateway(tmp_path) as gw:
        assert gw.settings.auth_failure_limit == 20
        wrong = {"Authorization": "Bearer guess"}
        tokens = [(await gw.raw.get("/v1/stats", headers=wrong)).status_code for _ in range(25)]
        assert tokens == [401] * 20 + [429] * 5
        urls = (await gw.api.get("/v1/accounts/sandbox")).json()["callback_urls"]
        base = "/callbacks/sandbox"
        keys = [
            (await gw.raw.post(f"{base}/dlr?key=wrong", json={})).status_code for _ in range(25)
        ]
        assert keys == [403] * 20 + [429] * 5
        # What presents a valid credential, or none where none is needed, is served.
        assert (await gw.api.get("/v1/stats")).status_code == 200
        assert (await gw.api.get("/metrics")).status_code == 200
        for path in ("/healthz", "/readyz", "/openapi.json"):
            assert (await gw.raw.get(path)).status_code == 200, path
        report = {"id": "sbx-early", "to": "46700000001", "status": "DELIVERED"}
        dlr = await gw.raw.post(urls["dlr"], json=report)
        assert dlr.status_code == 200 and dlr.json() == {"ok": True, "stored": 1}
        body = {"from": "+46701234567", "to": "+46700000000", "text": "still here", "id": "i1"}
        assert (await gw.raw.post(urls["inbound"], json=body)).status_code == 200
        [stored] = (await gw.api.get("/v1/inbound")).json()["inbound"]
        assert stored["text"] == "still here"
        # The sandbox's own reports come from 127.0.0.1 too: the message is delivered.
        [sent] = await gw.send(to="+46700000001", text="hello")

        async def delivered() -> bool:
            return bool((await gw.message(sent["id"]))["status"] == "delivered")

        await eventually(delivered)
        signed_in = await gw.raw.post("/console/login", data={"token": TOKEN})
        assert signed_in.status_code == 303
        # ...and wrong credentials are still refused.
        assert (await gw.raw.get("/v1/stats", headers=wrong)).status_code == 429
        assert (await gw.raw.post(f"{base}/inbound?key=wrong", json={})).status_code == 429
        assert (await gw.raw.post("/console/login", data={"token": "guess"})).status_code == 429


async def test_wrong_callback_keys_count_as_failed_authentications(tmp_path: Path) -> None:
    async with running_gateway(tmp_path, auth_failure_limit=2, auth_failure_window=60.0) as gw:
        url = "/callbacks/sandbox/dlr?key=wrong"
        assert [(await gw.raw.post(url, json={})).status_code for _ in range(2)] == [403, 403]
        throttled = await gw.raw.post(url, json={})
        assert throttled.status_code == 429 and int(throttled.headers["retry-after"]) >= 1


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
            assert (await gw.raw.post(f"/callbacks/nobody/{kind}?key=x")).status_code == 403


async def test_failed_console_sign_ins_are_throttled_with_a_readable_page(
    tmp_path: Path,
) -> None:
    async with running_gateway(tmp_path, auth_failure_limit=2) as gw:
        tries = [(await gw.raw.post("/console/login", data={"token": "guess"})) for _ in range(3)]
        assert [t.status_code for t in tries] == [401, 401, 429]
        throttled = tries[-1]
        assert throttled.headers["content-type"].startswith("text/html")
        assert int(throttled.headers["retry-after"]) >= 1
        assert "Too many failed sign-ins" in throttled.text and "<form" in throttled.text
        # Sign-ins and API calls guess the same tokens: they count together.
        wrong = {"Authorization": "Bearer guess"}
        assert (await gw.raw.get("/v1/stats", headers=wrong)).status_code == 429
        assert (await gw.raw.post("/console/login", data={"token": TOKEN})).status_code == 303
