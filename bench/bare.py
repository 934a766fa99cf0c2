"""The baseline: a bare Starlette app that parses the same JSON and answers 200."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def dlr(request: Request) -> Response:
    body = await request.json()
    return JSONResponse({"ok": True, "reports": [body.get("statusStr")]})


app = Starlette(
    routes=[
        Route("/healthz", healthz),
        Route("/callbacks/{account}/dlr", dlr, methods=["POST"]),
    ]
)
