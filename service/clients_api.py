"""/v1/clients: the applications that send through smsgw, and their API keys."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from service.http import read_json, runtime
from service.usecases.clients import (
    change_client,
    client_shown,
    clients_shown,
    create_client,
    issue_key,
    remove_client,
    require_client,
    revoke_key,
)


async def clients(request: Request) -> Response:
    rt = runtime(request)
    if request.method == "POST":
        # The only answer that shows the first key and the webhook secret.
        return JSONResponse(await create_client(rt, await read_json(request)), status_code=201)
    return JSONResponse({"clients": await clients_shown(rt, await rt.store.list_clients())})


async def client(request: Request) -> Response:
    rt = runtime(request)
    name = request.path_params["name"]
    if request.method == "DELETE":
        await remove_client(rt, name)
        return Response(status_code=204)
    if request.method == "PATCH":
        changed = await change_client(rt, name, await read_json(request))
        return JSONResponse(await client_shown(rt, changed))
    return JSONResponse(await client_shown(rt, await require_client(rt, name)))


async def keys(request: Request) -> Response:
    rt = runtime(request)
    issued = await issue_key(rt, request.path_params["name"], await read_json(request))
    return JSONResponse(issued, status_code=201)


async def key(request: Request) -> Response:
    rt = runtime(request)
    await revoke_key(rt, request.path_params["name"], request.path_params["id"])
    return Response(status_code=204)


ROUTES = [
    Route("/v1/clients", clients, methods=["GET", "POST"]),
    Route("/v1/clients/{name}", client, methods=["GET", "PATCH", "DELETE"]),
    Route("/v1/clients/{name}/keys", keys, methods=["POST"]),
    Route("/v1/clients/{name}/keys/{id}", key, methods=["DELETE"]),
]
