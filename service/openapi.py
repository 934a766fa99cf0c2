"""The OpenAPI 3.1 description served at /openapi.json."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from handlers import HANDLERS
from handlers.base import ProviderHandler
from service.model import Status

_ERROR = {"$ref": "#/components/responses/Error"}
_PAGE = [
    {
        "name": "limit",
        "in": "query",
        "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50},
    },
    {"name": "cursor", "in": "query", "schema": {"type": "string", "pattern": "^[0-9]+$"}},
]
_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
_AFTER = {
    "name": "after",
    "in": "query",
    "description": "the last event_id read; the Last-Event-ID header does the same",
    "schema": {"type": "string", "pattern": "^[0-9]+$"},
}
_RULE_PROPERTIES: dict[str, Any] = {
    "name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"},
    "position": {"type": "integer", "minimum": 0, "maximum": 1000000, "default": 100},
    "kind": {"type": "string", "enum": ["keyword", "regex", "default"], "default": "keyword"},
    "pattern": {"type": "string", "maxLength": 200},
    "reply": {
        "type": "string",
        "minLength": 1,
        "maxLength": 1000,
        "description": "template: {from}, {to}, {text}, {keyword}",
    },
    "account": {"type": ["string", "null"]},
    "number": {"type": ["string", "null"]},
    "active": {"type": "boolean", "default": True},
}


_HEALTH = {"type": "object", "properties": {"status": {"type": "string"}}}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


_COUNTERS = {
    "type": "object",
    "properties": {
        name: {"type": "integer"}
        for name in (
            "requests",
            "accepted",
            "failed",
            "delivered",
            "undelivered",
            "pending",
            "unmatched",
        )
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
                        "properties": {key: {"type": "array", "items": _ref(schema)}},
                    }
                ),
                "401": _ERROR,
            },
        },
        "post": {
            "summary": added,
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _ref(f"{schema}Input")}},
            },
            "responses": {
                "201": _json(_ref(schema), "Created"),
                "400": _ERROR,
                "401": _ERROR,
                "409": _ERROR,
                "422": _ERROR,
            },
        },
    }


def _named(schema: str) -> dict[str, Any]:
    """One resource of a collection, by its name: read, change from `<schema>Input`, delete."""
    return {
        "get": {
            "parameters": [_NAME],
            "responses": {"200": _json(_ref(schema)), "401": _ERROR, "404": _ERROR},
        },
        "patch": {
            "parameters": [_NAME],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _ref(f"{schema}Input")}},
            },
            "responses": {
                "200": _json(_ref(schema)),
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


def _credentials(handlers: Mapping[str, ProviderHandler]) -> dict[str, Any]:
    """Every registered credential by name; which ones an account needs depends on its
    provider, so none is required here and the API says which one is missing."""
    used_by: dict[str, list[str]] = {}
    for handler in handlers.values():
        for credential in handler.credentials:
            used_by.setdefault(credential.name, []).append(handler.display_name)
    return {
        "type": "object",
        "properties": {
            name: {"type": "string", "description": ", ".join(companies)}
            for name, companies in used_by.items()
        },
        "additionalProperties": {"type": "string"},
    }


def _account_properties(handlers: Mapping[str, ProviderHandler]) -> dict[str, Any]:
    return {
        "name": {"type": "string", "maxLength": 64},
        "provider": {"type": "string", "enum": sorted(handlers)},
        "credentials": _credentials(handlers),
        "sender": {"type": "string", "maxLength": 20},
        "fallback_sender": {"type": "string", "maxLength": 20},
        "active": {"type": "boolean"},
        "pattern": {"type": "string", "enum": ["batch", "loop"]},
        "priority": {"type": "integer", "minimum": 0, "maximum": 1000000},
        "base_url": {"type": ["string", "null"]},
        "options": {
            "type": "object",
            "description": "provider options by name (README: Providers)",
            "additionalProperties": True,
        },
        "description": {"type": "string", "maxLength": 500},
        "logo_url": {"type": "string", "maxLength": 500},
        "signup_url": {"type": "string", "maxLength": 500},
    }


def spec(handlers: Mapping[str, ProviderHandler] = HANDLERS) -> dict[str, Any]:
    """The document for the providers registered in `handlers`."""
    account_properties = _account_properties(handlers)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "smsgw",
            "version": "1",
            "description": "SMS gateway: send, reconcile delivery reports, count.",
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {"Error": _json(_ref("Error"), "Error")},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["code", "message", "field"],
                            "properties": {
                                k: {"type": "string"} for k in ("code", "message", "field")
                            },
                        }
                    },
                },
                "SendRequest": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "to": {
                            "oneOf": [
                                {"type": "string"},
                                {"type": "array", "items": {"type": "string"}, "minItems": 1},
                            ]
                        },
                        "text": {"type": "string", "minLength": 1},
                        "automation": {"type": "string", "description": "number|message"},
                        "sender": {"type": "string"},
                        "account": {"type": "string"},
                        "client_ref": {"type": "string", "maxLength": 128},
                    },
                },
                "Message": {
                    "type": "object",
                    "required": ["id", "to", "status", "encoding", "segments", "account"],
                    "properties": {
                        "id": {"type": "string"},
                        "to": {"type": "string"},
                        "status": {"type": "string", "enum": [s.value for s in Status]},
                        "encoding": {"type": "string", "enum": ["GSM-7", "UCS-2"]},
                        "segments": {"type": "integer"},
                        "account": {"type": "string"},
                        "sender": {"type": ["string", "null"]},
                        "text": {"type": "string"},
                        "client_ref": {"type": ["string", "null"]},
                        "request_id": {"type": ["string", "null"]},
                        "error": {"oneOf": [{"type": "null"}, _ref("MessageError")]},
                        "http_status": {"type": ["integer", "null"]},
                        "http_response": {"type": ["string", "null"]},
                        "attempts": {"type": "integer"},
                        "created_at": {"type": "string"},
                        "updated_at": {"type": "string"},
                        "events": {
                            "type": "array",
                            "description": "on GET /v1/messages/{id} only",
                            "items": _ref("Event"),
                        },
                    },
                },
                "MessageError": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                },
                "Event": {
                    "type": "object",
                    "required": ["id", "ts", "event"],
                    "description": "an event's own fields follow its name (README: Events)",
                    "properties": {
                        "id": {"type": "integer"},
                        "ts": {"type": "string"},
                        "event": {"type": "string"},
                    },
                    "additionalProperties": True,
                },
                "InboundMessage": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "integer"},
                        "account": {"type": "string"},
                        "from": {"type": "string"},
                        "to": {"type": "string"},
                        "text": {"type": "string"},
                        "provider_id": {"type": ["string", "null"]},
                        "received_at": {"type": "string"},
                        "rule": {"type": ["string", "null"]},
                        "reply_note": {"type": ["string", "null"]},
                        "reply": {"oneOf": [{"type": "null"}, _ref("Message")]},
                    },
                },
                "Counters": _COUNTERS,
                "AutoReplyInput": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": _RULE_PROPERTIES,
                },
                "AutoReply": {"type": "object", "properties": _RULE_PROPERTIES},
                "Suppression": {
                    "type": "object",
                    "properties": {
                        "number": {"type": "string"},
                        "keyword": {"type": "string"},
                        "account": {"type": ["string", "null"]},
                        "created_at": {"type": "string"},
                    },
                },
                "AccountInput": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": account_properties,
                },
                "WebhookInput": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["url"],
                    "properties": {
                        "url": {"type": "string", "format": "uri", "maxLength": 2000},
                        "events": {
                            "type": "array",
                            "maxItems": 50,
                            "items": {"type": "string", "examples": ["message.*", "dlr.matched"]},
                            "description": "event names, prefix.* globs or *; empty: every event",
                        },
                        "description": {"type": "string", "maxLength": 500},
                    },
                },
                "Webhook": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string"},
                        "url": {"type": "string"},
                        "events": {"type": "array", "items": {"type": "string"}},
                        "description": {"type": "string"},
                        "active": {"type": "boolean"},
                        "secret": {
                            "type": "string",
                            "description": "whsec_… in the 201 answer to POST only; masked after",
                        },
                        "last_status": {"type": ["integer", "null"]},
                        "last_error": {"type": ["string", "null"]},
                        "last_attempt_at": {"type": ["string", "null"]},
                        "failures": {"type": "integer", "description": "consecutive"},
                        "delivered": {"type": "integer"},
                        "pending": {"type": "integer"},
                        "created_at": {"type": "string"},
                    },
                },
                "Account": {
                    "type": "object",
                    "properties": {
                        **account_properties,
                        "callback_urls": {
                            "type": "object",
                            "properties": {
                                "dlr": {"type": "string"},
                                "inbound": {"type": "string"},
                            },
                        },
                    },
                },
            },
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
                        "content": {"application/json": {"schema": _ref("SendRequest")}},
                    },
                    "responses": {
                        "202": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "messages": {"type": "array", "items": _ref("Message")}
                                },
                            },
                            "Queued",
                        ),
                        "400": _ERROR,
                        "401": _ERROR,
                        "409": _ERROR,
                        "413": _ERROR,
                        "422": _ERROR,
                    },
                },
                "get": {
                    "summary": "Message history, newest first",
                    "parameters": [
                        *_PAGE,
                        *(
                            {"name": n, "in": "query", "schema": {"type": "string"}}
                            for n in ("status", "account", "to")
                        ),
                    ],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "messages": {"type": "array", "items": _ref("Message")},
                                    "next_cursor": {"type": ["string", "null"]},
                                },
                            }
                        ),
                        "400": _ERROR,
                        "401": _ERROR,
                        "422": _ERROR,
                    },
                },
            },
            "/v1/messages/{id}": {
                "get": {
                    "summary": "One message with its events",
                    "parameters": [
                        {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
                    ],
                    "responses": {"200": _json(_ref("Message")), "401": _ERROR, "404": _ERROR},
                }
            },
            "/v1/stats": {
                "get": {
                    "summary": "Counters",
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "total": _ref("Counters"),
                                    "accounts": {
                                        "type": "object",
                                        "additionalProperties": _ref("Counters"),
                                    },
                                },
                            }
                        ),
                        "401": _ERROR,
                    },
                }
            },
            "/v1/inbound": {
                "get": {
                    "summary": "Inbound messages, newest first",
                    "parameters": _PAGE,
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "inbound": {"type": "array", "items": _ref("InboundMessage")},
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
                                    "suppressions": {"type": "array", "items": _ref("Suppression")}
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
                        "201": _json(_ref("Suppression"), "Added"),
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
                                    "webhooks": {"type": "array", "items": _ref("Webhook")}
                                },
                            }
                        ),
                        "401": _ERROR,
                    },
                },
                "post": {
                    "summary": "Register an event webhook (Standard Webhooks signatures)",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("WebhookInput")}},
                    },
                    "responses": {
                        "201": _json(_ref("Webhook"), "Created; the only answer with the secret"),
                        "400": _ERROR,
                        "401": _ERROR,
                        "422": _ERROR,
                    },
                },
            },
            "/v1/webhooks/{id}": {
                "get": {
                    "parameters": [
                        {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
                    ],
                    "responses": {"200": _json(_ref("Webhook")), "401": _ERROR, "404": _ERROR},
                },
                "delete": {
                    "summary": "Remove a webhook and its pending deliveries",
                    "parameters": [
                        {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
                    ],
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
