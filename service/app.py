"""The Starlette application: routes, middleware, and the single error mapping."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator

import structlog
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from service import api, callbacks, clients_api, events_api, inbound_api, reports_api, web
from service.clock import Clock, iso_ago
from service.errors import SmsgwError
from service.ingest import DlrIngest
from service.keyring import KeyResolver
from service.metrics import CallbackCounter, Metrics
from service.middleware import BearerAuth, BodyLimit, LoadShed
from service.openapi import spec
from service.ratelimit import FailedAuthentications
from service.runtime import Runtime, running
from service.sandbox import SandboxProvider
from service.settings import Settings

_log = structlog.get_logger("smsgw.app")


async def smsgw_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SmsgwError)
    return JSONResponse(exc.as_body(), status_code=exc.status, headers=exc.headers())


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 in the contract's error shape."""
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return JSONResponse(
        {"error": {"code": code, "message": str(exc.detail), "field": ""}},
        status_code=exc.status_code,
        headers=exc.headers,
    )


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    rt: Runtime = request.app.state.runtime
    if not await rt.store.ping():
        return JSONResponse({"status": "unavailable"}, status_code=503)
    reasons = []
    depth, oldest = await rt.store.inbox_depth()
    lag = max(0.0, time.time() - oldest) if oldest is not None else 0.0
    if lag > rt.settings.inbox_max_lag:
        reasons.append(
            f"inbox: the oldest of {depth} stored callbacks has waited {lag:.0f} s to be "
            f"applied (more than [inbox] max_lag, {rt.settings.inbox_max_lag:g} s)"
        )
    if reasons:
        return JSONResponse({"status": "degraded", "reasons": reasons}, status_code=503)
    return JSONResponse({"status": "ready"})


async def openapi(request: Request) -> Response:
    # Built per request from the provider registry: a rare read, and always what the
    # registered handlers accept.
    return JSONResponse(spec())


async def metrics(request: Request) -> Response:
    rt: Runtime = request.app.state.runtime
    body = await rt.metrics.render(rt.store, iso_ago(rt.settings.unmatched_ttl))
    return Response(body, headers={"content-type": CONTENT_TYPE_LATEST})


def create_app(settings: Settings, clock: Clock = time.time) -> Starlette:
    """The app; `clock` is the one clients' quotas and rate limits run on."""
    sandbox = SandboxProvider(settings.base_url, settings.sandbox_dlr_delay)
    # Made here, not in the lifespan: the middleware that counts callbacks needs it first.
    app_metrics = Metrics()
    # Made here too: the bearer middleware and the console count failures in it.
    auth_failures = FailedAuthentications(settings.auth_failure_limit, settings.auth_failure_window)
    # And this: the bearer middleware resolves client keys before the store is open.
    keys = KeyResolver()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with running(
            settings, metrics=app_metrics, auth_failures=auth_failures, keys=keys, clock=clock
        ) as runtime:
            app.state.runtime = runtime
            _log.info("smsgw.started", public_url=settings.base_url, store=settings.store_name)
            try:
                yield
            finally:
                await sandbox.close()

    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/openapi.json", openapi),
            Route("/metrics", metrics),
            *api.ROUTES,
            *clients_api.ROUTES,
            *inbound_api.ROUTES,
            *events_api.ROUTES,
            *reports_api.ROUTES,
            *callbacks.ROUTES,
            Mount("/sandbox", routes=sandbox.routes),
            web.console(settings, auth_failures),
        ],
        middleware=[
            Middleware(DlrIngest, metrics=app_metrics, max_in_flight=settings.max_in_flight),
            Middleware(CallbackCounter, metrics=app_metrics),
            Middleware(LoadShed, limit=settings.max_in_flight),
            Middleware(BearerAuth, tokens=settings.api_tokens, failures=auth_failures, keys=keys),
            Middleware(
                BodyLimit,
                limits=[("/callbacks/", settings.callback_max_body)],
                default=settings.max_body,
            ),
        ],
        exception_handlers={SmsgwError: smsgw_error, HTTPException: http_error},
        lifespan=lifespan,
    )
