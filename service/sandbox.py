"""The sandbox provider's server side, mounted at /sandbox.

It accepts sends like a real provider and, after a delay, posts an `ENROUTE` and
then a final report to the callback URL given with each send. Outcomes follow the
recipient's last digit so that every path can be tried by hand:
3 undelivered, 4 expired, 5 rejected, 9 refused at submission, anything else delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from typing import Any

import httpx
import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from service.errors import Unparseable
from service.parsing import decode_json

FINAL_BY_LAST_DIGIT = {"3": "UNDELIVERED", "4": "EXPIRED", "5": "REJECTED"}
_log = structlog.get_logger("smsgw.sandbox")


class SandboxProvider:
    def __init__(self, own_base_url: str, dlr_delay: float) -> None:
        self._client = httpx.AsyncClient(timeout=10)
        self._own_base_url = own_base_url
        self._delay = dlr_delay
        self._tasks: set[asyncio.Task[None]] = set()
        self.routes = [Route("/api/messages", self._send, methods=["POST"])]

    async def _send(self, request: Request) -> JSONResponse:
        try:
            body: Any = decode_json(await request.body())
        except Unparseable:
            return JSONResponse({"error": "body is not JSON"}, status_code=400)
        if not isinstance(body, dict) or not isinstance(body.get("to"), list):
            return JSONResponse({"error": "to must be a list"}, status_code=400)
        callback = str(body.get("callback_url", ""))
        # Only our own callbacks: the sandbox must not become a way to POST anywhere.
        if not callback.startswith(self._own_base_url + "/callbacks/"):
            return JSONResponse({"error": "callback_url must be this service's"}, status_code=400)
        answers = []
        for number in body["to"]:
            number = str(number)
            if number.endswith("9"):
                refusal = {"code": "invalid_number", "text": "sandbox refuses numbers ending in 9"}
                answers.append({"to": number, "error": refusal})
                continue
            request_id = "sbx-" + secrets.token_hex(8)
            answers.append({"to": number, "id": request_id})
            final = FINAL_BY_LAST_DIGIT.get(number[-1:], "DELIVERED")
            task = asyncio.create_task(self._report(callback, request_id, number, final))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return JSONResponse({"messages": answers})

    async def _report(self, callback: str, request_id: str, number: str, final: str) -> None:
        for status in ("ENROUTE", final):
            await asyncio.sleep(self._delay)
            body = {
                "id": request_id,
                "to": number,
                "status": status,
                "error_code": "" if status in ("ENROUTE", "DELIVERED") else status.lower(),
            }
            for attempt in range(5):
                try:
                    response = await self._client.post(callback, json=body)
                    if response.status_code < 500:
                        break
                except httpx.HTTPError as exc:
                    _log.warning("sandbox.callback_failed", error=type(exc).__name__)
                await asyncio.sleep(0.5 * 2**attempt)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._client.aclose()
