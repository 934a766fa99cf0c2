"""The OpenAPI 3.1 description served at /openapi.json."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from handlers import HANDLERS
from handlers.base import ProviderHandler
from service.openapi_schemas import ref, schemas

_ERROR = {"$ref": "#/components/responses/Error"}
_TOO_MANY = {"$ref": "#/components/responses/TooManyRequests"}
_PAGE = [
    {
        "name": "limit",
        "in": "query",
        "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50},
    },
    {"name": "cursor", "in": "query", "schema": {"type": "string", "pattern": "^[0-9]+$"}},
]
_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
_AFTER = {
    "name": "after",
    "in": "query",
    "description": "the last event_id read; the Last-Event-ID header does the same",
    "schema": {"type": "string", "pattern": "^[0-9]+$"},
}
_HEALTH = {
    "type": "object",
    "properties": {
        "status": {"type": "string"},
        "reasons": {"type": "array", "items": {"type": "string"}},
    },
}
_TIME = {"type": "string", "format": "date-time"}
_REPORT_FILTERS = [
    {"name": "account", "in": "query", "schema": {"type": "string"}},
    {
        "name": "state",
        "in": "query",
        "schema": {"type": "string", "enum": ["pending", "applied", "parked", "unmatched"]},
    },
    {"name": "since", "in": "query", "schema": _TIME},
    {"name": "until", "in": "query", "schema": _TIME},
    {
        "name": "after",
        "in": "query",
        "description": "the next_cursor of the page before",
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    },
    _PAGE[0],
]


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _page_of(key: str, schema: str) -> dict[str, Any]:
    """A page of `schema` items under `key`, with the cursor of the next page."""
    return {
        "type": "object",
        "properties": {
            key: {"type": "array", "items": ref(schema)},
            "next_cursor": {"type": ["string", "null"]},
        },
    }


def _create(
    summary: str,
    body: str,
    created: str,
    description: str = "Created",
    refusals: tuple[str, ...] = ("400", "401", "422"),
) -> dict[str, Any]:
    """A POST that takes a `body` schema and answers 201 with a `created` one."""
    return {
        "summary": summary,
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": ref(body)}},
        },
        "responses": {
            "201": _json(ref(created), description),
            **dict.fromkeys(sorted(refusals), _ERROR),
        },
    }


def _collection(key: str, schema: str, listed: str, added: str) -> dict[str, Any]:
    """A collection of named resources: list them, add one from `<schema>Input`."""
    return {
        "get": {
            "summary": listed,
            "responses": {
                "200": _json(
                    {
                        "type": "object",
                        "properties": {key: {"type": "array", "items": ref(schema)}},
                    }
                ),
                "401": _ERROR,
            },
        },
        "post": _create(added, f"{schema}Input", schema, refusals=("400", "401", "409", "422")),
    }


def _named(schema: str) -> dict[str, Any]:
    """One resource of a collection, by its name: read, change from `<schema>Input`, delete."""
    return {
        "get": {
            "parameters": [_NAME],
            "responses": {"200": _json(ref(schema)), "401": _ERROR, "404": _ERROR},
        },
        "patch": {
            "parameters": [_NAME],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": ref(f"{schema}Input")}},
            },
            "responses": {
                "200": _json(ref(schema)),
                "400": _ERROR,
                "401": _ERROR,
                "404": _ERROR,
                "422": _ERROR,
            },
        },
        "delete": {
            "parameters": [_NAME],
            "responses": {"204": {"description": "Deleted"}, "401": _ERROR, "404": _ERROR},
        },
    }


def _client_paths() -> dict[str, Any]:
    """/v1/clients: a collection of named resources, whose create alone shows the first
    key and the webhook secret, and whose change takes every field but the name."""
    collection = _collection("clients", "Client", "Clients", "Add a client")
    collection["post"]["responses"]["201"] = _json(ref("ClientCreated"), "Created")
    named = _named("Client")
    named["patch"]["requestBody"]["content"]["application/json"]["schema"] = ref("ClientChange")
    key_id = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
    paths = {
        "/v1/clients": collection,
        "/v1/clients/{name}": named,
        "/v1/clients/{name}/keys": {
            "post": {
                **_create(
                    "Issue another key",
                    "ClientKeyInput",
                    "ClientKeyCreated",
                    refusals=("400", "401", "404", "422"),
                ),
                "parameters": [_NAME],
            }
        },
        "/v1/clients/{name}/keys/{id}": {
            "delete": {
                "summary": "Revoke a key",
                "parameters": [_NAME, key_id],
                "responses": {"204": {"description": "Revoked"}, "401": _ERROR, "404": _ERROR},
            }
        },
    }
    for operations in paths.values():
        for operation in operations.values():
            operation["responses"]["403"] = _ERROR
    return paths


def spec(handlers: Mapping[str, ProviderHandler] = HANDLERS) -> dict[str, Any]:
    """The document for the providers registered in `handlers`."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "smsgw",
            "version": "1",
            "description": "SMS gateway: send, reconcile delivery reports, count.",
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {
                "Error": _json(ref("Error"), "Error"),
                "TooManyRequests": {
                    **_json(
                        ref("Error"),
                        "A client's key sent past its quota (error.code quota_exceeded; "
                        "error.field quota.day or quota.month; the message gives the limit "
                        "and when it resets) or faster than its rate_per_second (rate_limited). "
                        "Nothing was queued.",
                    ),
                    "headers": {
                        "Retry-After": {
                            "description": "seconds until the quota resets or the rate allows",
                            "schema": {"type": "integer", "minimum": 1},
                        }
                    },
                },
            },
            "schemas": schemas(handlers),
        },
        "security": [{"bearer": []}],
        "paths": {
            "/v1/messages": {
                "post": {
                    "summary": "Queue messages",
                    "parameters": [
                        {
                            "name": "Idempotency-Key",
                            "in": "header",
                            "schema": {"type": "string", "maxLength": 200},
                        }
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": ref("SendRequest")}},
                    },
                    "responses": {
                        "202": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "messages": {"type": "array", "items": ref("Message")}
                                },
                            },
                            "Queued",
                        ),
                        "400": _ERROR,
                        "401": _ERROR,
                        "409": _ERROR,
                        "413": _ERROR,
                        "422": _ERROR,
                        "429": _TOO_MANY,
                    },
                },
                "get": {
                    "summary": "Message history, newest first",
                    "parameters": [
                        *_PAGE,
                        *(
                            {"name": n, "in": "query", "schema": {"type": "string"}}
                            for n in ("status", "account", "to", "client")
                        ),
                    ],
                    "responses": {
                        "200": _json(_page_of("messages", "Message")),
                        "400": _ERROR,
                        "401": _ERROR,
                        "422": _ERROR,
                    },
                },
            },
            "/v1/messages/{id}": {
                "get": {
                    "summary": "One message with its events",
                    "parameters": [_ID],
                    "responses": {"200": _json(ref("Message")), "401": _ERROR, "404": _ERROR},
                },
                "delete": {
                    "summary": "Cancel a scheduled or queued message not yet being sent",
                    "parameters": [_ID],
                    "responses": {
                        "200": _json(ref("Message"), "Cancelled"),
                        "401": _ERROR,
                        "404": _ERROR,
                        "409": _ERROR,
                    },
                },
            },
            "/v1/stats": {
                "get": {
                    "summary": "Counters",
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "total": ref("Counters"),
                                    "accounts": {
                                        "type": "object",
                                        "additionalProperties": ref("Counters"),
                                    },
                                    "clients": {
                                        "type": "object",
                                        "description": "admin tokens only; a client's key "
                                        "gets its own counters as total",
                                        "additionalProperties": ref("Counters"),
                                    },
                                    "usage": {
                                        **ref("ClientUsage"),
                                        "description": "a client's key only: its usage",
                                    },
                                },
                            }
                        ),
                        "401": _ERROR,
                        "403": _ERROR,
                    },
                }
            },
            "/v1/inbound": {
                "get": {
                    "summary": "Inbound messages, newest first",
                    "parameters": _PAGE,
                    "responses": {
                        "200": _json(_page_of("inbound", "InboundMessage")),
                        "400": _ERROR,
                        "401": _ERROR,
                        "422": _ERROR,
                    },
                }
            },
            "/v1/autoreplies": _collection(
                "autoreplies",
                "AutoReply",
                "Auto-reply rules in the order they are tried",
                "Add an auto-reply rule",
            ),
            "/v1/autoreplies/{name}": _named("AutoReply"),
            "/v1/suppressions": {
                "get": {
                    "summary": "Numbers that opted out; nothing is sent to them",
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "suppressions": {"type": "array", "items": ref("Suppression")}
                                },
                            }
                        ),
                        "401": _ERROR,
                    },
                },
                "post": {
                    "summary": "Opt a number out by hand",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["number"],
                                    "properties": {"number": {"type": "string"}},
                                }
                            }
                        },
                    },
                    "responses": {
                        "201": _json(ref("Suppression"), "Added"),
                        "400": _ERROR,
                        "401": _ERROR,
                        "422": _ERROR,
                    },
                },
            },
            "/v1/suppressions/{number}": {
                "delete": {
                    "parameters": [
                        {
                            "name": "number",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        }
                    ],
                    "responses": {
                        "204": {"description": "Removed"},
                        "401": _ERROR,
                        "404": _ERROR,
                        "422": _ERROR,
                    },
                }
            },
            "/v1/events": {
                "get": {
                    "summary": "Stored events after a cursor, oldest first, one JSON object a line",
                    "parameters": [_AFTER, _PAGE[0]],
                    "responses": {
                        "200": {
                            "description": "NDJSON; the smsgw-next-cursor header is the next after",
                            "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
                        },
                        "400": _ERROR,
                        "401": _ERROR,
                        "422": _ERROR,
                    },
                }
            },
            "/v1/reports": {
                "get": {
                    "summary": "Stored delivery-report callbacks, oldest first, with what "
                    "became of each report",
                    "parameters": _REPORT_FILTERS,
                    "responses": {
                        "200": _json(_page_of("reports", "StoredCallback")),
                        "400": _ERROR,
                        "401": _ERROR,
                        "422": _ERROR,
                    },
                }
            },
            "/v1/reports/replay": {
                "post": {
                    "summary": "Apply stored callbacks again (idempotent)",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": ref("ReplayInput")}},
                    },
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "replayed": {"type": "integer"},
                                    "next_cursor": {"type": ["string", "null"]},
                                },
                            }
                        ),
                        "400": _ERROR,
                        "401": _ERROR,
                        "422": _ERROR,
                    },
                }
            },
            "/v1/events/stream": {
                "get": {
                    "summary": "Server-Sent Events: stored events after the cursor, then live",
                    "parameters": [_AFTER],
                    "responses": {
                        "200": {
                            "description": "text/event-stream; each event's id is its event_id",
                            "content": {"text/event-stream": {"schema": {"type": "string"}}},
                        },
                        "400": _ERROR,
                        "401": _ERROR,
                    },
                }
            },
            "/v1/accounts": _collection(
                "accounts", "Account", "Gateway accounts", "Add an account"
            ),
            "/v1/accounts/{name}": _named("Account"),
            **_client_paths(),
            "/v1/balance/{account}": {
                "get": {
                    "parameters": [
                        {
                            "name": "account",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        }
                    ],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "account": {"type": "string"},
                                    "balance": {"type": "number"},
                                    "currency": {"type": ["string", "null"]},
                                },
                            }
                        ),
                        "401": _ERROR,
                        "404": _ERROR,
                        "502": _ERROR,
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "security": [{"bearer": []}],
                    "responses": {
                        "200": {
                            "description": "Prometheus text exposition format",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        },
                        "401": _ERROR,
                    },
                }
            },
            "/v1/webhooks": {
                "get": {
                    "summary": "Event webhooks",
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "webhooks": {"type": "array", "items": ref("Webhook")}
                                },
                            }
                        ),
                        "401": _ERROR,
                    },
                },
                "post": _create(
                    "Register an event webhook (Standard Webhooks signatures)",
                    "WebhookInput",
                    "Webhook",
                    "Created; the only answer with the secret",
                ),
            },
            "/v1/webhooks/{id}": {
                "get": {
                    "parameters": [_ID],
                    "responses": {"200": _json(ref("Webhook")), "401": _ERROR, "404": _ERROR},
                },
                "delete": {
                    "summary": "Remove a webhook and its pending deliveries",
                    "parameters": [_ID],
                    "responses": {"204": {"description": "Deleted"}, "401": _ERROR, "404": _ERROR},
                },
            },
            "/healthz": {"get": {"security": [], "responses": {"200": _json(_HEALTH)}}},
            "/readyz": {
                "get": {
                    "security": [],
                    "responses": {"200": _json(_HEALTH), "503": _json(_HEALTH)},
                }
            },
        },
    }
