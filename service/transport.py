"""The provider HTTP adapter: one pooled client, and a handler's request performed on it.

Handlers only describe requests (`WireRequest`) and read answers (`WireResponse`);
this is the one place that turns one into the other over the network, shared by the
dispatcher, the poller, balance calls and webhook deliveries. It is also where a
provider's answer is scrubbed of the account's credentials, before a handler reads it:
whatever smsgw later stores, logs or shows of an answer derives from the scrubbed one.
"""

from __future__ import annotations

import httpx

from handlers.base import WireRequest, WireResponse
from service.redact import Redactor
from service.settings import Settings

# Errors raised before any byte of the request reached the provider: safe to retry.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def provider_client(settings: Settings) -> httpx.AsyncClient:
    """The one pooled client for provider requests, polls and webhook deliveries."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(settings.request_timeout, connect=min(5.0, settings.request_timeout)),
        limits=httpx.Limits(
            max_connections=settings.concurrency * 4,
            max_keepalive_connections=settings.concurrency * 2,
        ),
    )


async def execute(
    client: httpx.AsyncClient, request: WireRequest, redactor: Redactor
) -> WireResponse:
    """Perform a handler's request; the answer (body and headers) comes back without the
    secrets `redactor` knows. httpx errors propagate for the caller to classify, their
    text scrubbed the same way."""
    try:
        response = await client.request(
            request.method,
            request.url,
            params=list(request.params) or None,
            headers=dict(request.headers),
            json=request.json,
            data=dict(request.form) if request.form is not None else None,
        )
    except httpx.HTTPError as exc:
        # Same type, so callers still tell "never sent" from "may have been sent";
        # the chain below it may repeat the request, so it is cut.
        exc.args = (redactor.text(str(exc)),)
        raise exc from None
    return WireResponse(
        response.status_code,
        redactor.bytes(response.content),
        {name: redactor.text(value) for name, value in response.headers.items()},
    )
