"""The schemas of the OpenAPI document: every body the API takes or gives, by name."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from handlers.base import ProviderHandler
from service import bounds
from service.model import InboxState, Priority, Status

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


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


_NAME = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"}
_CLIENT_SETTINGS: dict[str, Any] = {
    "active": {"type": "boolean", "default": True},
    "scopes": {
        "type": "array",
        "minItems": 1,
        "items": {"type": "string", "enum": ["send", "read", "admin"]},
        "default": ["send", "read"],
    },
    "accounts": {
        "type": ["array", "null"],
        "minItems": 1,
        "items": {"type": "string"},
        "description": "the accounts its messages may use; null: every account",
    },
    "rate_per_second": {
        "type": ["number", "null"],
        "exclusiveMinimum": 0,
        "description": "messages a second its keys may send, shared by every smsgw process; "
        "a burst of one second's worth, and a larger send goes and is waited off after; "
        "faster sends get 429 rate_limited",
    },
    "quota": {
        "type": ["object", "null"],
        "description": "messages (one per recipient) a UTC day and a UTC month its keys may "
        "queue; a send that would pass one gets 429 quota_exceeded and queues nothing",
        "properties": {
            "day": {"type": ["integer", "null"], "minimum": 0},
            "month": {"type": ["integer", "null"], "minimum": 0},
        },
    },
    "callback_url": {"type": ["string", "null"], "format": "uri"},
}
_CLIENT_PROPERTIES: dict[str, Any] = {
    "name": _NAME,
    **_CLIENT_SETTINGS,
    "created_at": {"type": "string"},
    "keys": {"type": "array", "items": ref("ClientKey")},
    "usage": ref("ClientUsage"),
}
_CLIENT_SCHEMAS: dict[str, Any] = {
    "ClientInput": {
        "type": "object",
        "additionalProperties": False,
        "required": ["name"],
        "properties": {"name": _NAME, **_CLIENT_SETTINGS},
    },
    "ClientChange": {
        "type": "object",
        "additionalProperties": False,
        "properties": _CLIENT_SETTINGS,
    },
    "Client": {"type": "object", "properties": _CLIENT_PROPERTIES},
    "ClientCreated": {
        "type": "object",
        "properties": {
            **_CLIENT_PROPERTIES,
            "key": {"type": "string", "description": "its first API key; shown only here"},
            "webhook_secret": {
                "type": "string",
                "description": "whsec_…, to verify status callbacks; shown only here",
            },
        },
    },
    "ClientUsage": {
        "type": "object",
        "description": "messages (one per recipient) counted against the quotas in the "
        "current UTC day and month: counted when queued, given back when cancelled",
        "properties": {
            "day": {"type": "integer", "minimum": 0},
            "month": {"type": "integer", "minimum": 0},
            "resets_at": {
                "type": "object",
                "description": "the next UTC midnight, and the first of next month",
                "properties": {"day": {"type": "string"}, "month": {"type": "string"}},
            },
        },
    },
    "ClientKey": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "created_at": {"type": "string"},
            "last_used_at": {"type": ["string", "null"]},
            "revoked": {"type": "boolean"},
        },
    },
    "ClientKeyInput": {
        "type": "object",
        "additionalProperties": False,
        "required": ["name"],
        "properties": {"name": _NAME},
    },
    "ClientKeyCreated": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "key": {"type": "string", "description": "shown only here"},
        },
    },
}


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
            "cancelled",
            "unmatched",
        )
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


def schemas(handlers: Mapping[str, ProviderHandler]) -> dict[str, Any]:
    """`components.schemas` for the providers registered in `handlers`."""
    account_properties = _account_properties(handlers)
    return {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message", "field"],
                    "properties": {k: {"type": "string"} for k in ("code", "message", "field")},
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
                "send_at": {
                    "type": "string",
                    "description": "ISO-8601 with UTC offset; at most 35 days ahead; "
                    "the message is `scheduled` until then",
                },
                "valid_for": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": 3024000,
                    "description": "seconds from when the message is due; not with expires_at",
                },
                "expires_at": {
                    "type": "string",
                    "description": "ISO-8601 with UTC offset; not sent by then, the "
                    "message ends `expired` (error validity_expired)",
                },
                "callback_url": {
                    "type": "string",
                    "format": "uri",
                    "maxLength": bounds.WEBHOOK_URL,
                    "description": "http(s) URL each status change asked for is POSTed to "
                    "(StatusCallbackPayload, Standard Webhooks headers, signed with the "
                    "client's webhook_secret); default: the client's callback_url. An admin "
                    "token's send needs SMSGW_CALLBACK_SECRET, which signs it",
                },
                "callback_events": {
                    "type": "string",
                    "enum": ["final", "all"],
                    "default": "final",
                    "description": "final: the final status only; all: every status taken",
                },
                "priority": {
                    "type": "string",
                    "enum": [p.value for p in Priority],
                    "default": Priority.NORMAL.value,
                    "description": "within an account's rate limit high goes first; bulk "
                    "takes at most [dispatch] bulk_share of the sends while normal waits",
                },
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
                "client": {
                    "type": ["string", "null"],
                    "description": "the client whose key sent it; null: an admin token",
                },
                "request_id": {"type": ["string", "null"]},
                "error": {"oneOf": [{"type": "null"}, ref("MessageError")]},
                "http_status": {"type": ["integer", "null"]},
                "http_response": {"type": ["string", "null"]},
                "attempts": {"type": "integer"},
                "created_at": {"type": "string"},
                "updated_at": {"type": "string"},
                "send_at": {"type": ["string", "null"]},
                "expires_at": {"type": ["string", "null"]},
                "callback_url": {"type": ["string", "null"]},
                "callback_events": {"type": "string", "enum": ["final", "all"]},
                "callbacks_stopped_at": {
                    "type": ["string", "null"],
                    "description": "when the receiver answered 410: nothing is POSTed after",
                },
                "priority": {"type": "string", "enum": [p.value for p in Priority]},
                "events": {
                    "type": "array",
                    "description": "on GET /v1/messages/{id} only",
                    "items": ref("Event"),
                },
                "callbacks": {
                    "type": "array",
                    "description": "on GET /v1/messages/{id} only: one per status change "
                    "to POST, oldest first",
                    "items": ref("StatusCallback"),
                },
            },
        },
        "StatusCallback": {
            "type": "object",
            "properties": {
                "webhook_id": {"type": "string", "description": "the webhook-id header"},
                "status": {"type": "string", "enum": [s.value for s in Status]},
                "state": {"type": "string", "enum": ["pending", "delivered", "gave_up", "stopped"]},
                "next_attempt_at": {"type": ["string", "null"]},
                "attempts": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "at": {"type": "string"},
                            "http_status": {"type": ["integer", "null"]},
                            "error": {"type": ["string", "null"]},
                            "outcome": {
                                "type": "string",
                                "enum": ["delivered", "retry", "gave_up", "gone"],
                            },
                        },
                    },
                },
            },
        },
        "StatusCallbackPayload": {
            "type": "object",
            "description": "the body POSTed to a message's callback_url, with the headers "
            "webhook-id (the same on every retry), webhook-timestamp and webhook-signature",
            "required": [
                "type",
                "message_id",
                "client_ref",
                "status",
                "error",
                "segments",
                "account",
                "timestamp",
            ],
            "properties": {
                "type": {"type": "string", "enum": ["message.status"]},
                "message_id": {"type": "string"},
                "client_ref": {"type": "string"},
                "status": {"type": "string", "enum": [s.value for s in Status]},
                "error": {"oneOf": [{"type": "null"}, ref("MessageError")]},
                "segments": {"type": "integer"},
                "account": {"type": "string"},
                "timestamp": {"type": "string", "description": "when the status changed"},
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
                "reply": {"oneOf": [{"type": "null"}, ref("Message")]},
            },
        },
        "StoredCallback": {
            "type": "object",
            "properties": {
                "id": {"type": "integer"},
                "account": {"type": "string"},
                "state": {"type": "string", "enum": [s.value for s in InboxState]},
                "received_at": {"type": "string"},
                "applied_at": {"type": ["string", "null"]},
                "reports": {"type": "array", "items": ref("StoredReport")},
                "callback": {
                    "type": "object",
                    "description": "as it came, without the URL's key or any credential",
                    "properties": {
                        "method": {"type": "string"},
                        "content_type": {"type": "string"},
                        "query": {"type": "string"},
                        "headers": {
                            "type": "object",
                            "additionalProperties": {"type": "string"},
                        },
                        "body": {"type": "string"},
                    },
                },
            },
        },
        "StoredReport": {
            "type": "object",
            "properties": {
                "request_id": {"type": "string"},
                "recipient": {"type": "string"},
                "status": {"type": "string", "enum": [s.value for s in Status]},
                "error_code": {"type": "string"},
                "error_text": {"type": "string"},
                "outcome": {
                    "type": "string",
                    "enum": ["pending", "matched", "parked", "unmatched", "duplicate"],
                },
                "message_id": {"type": ["string", "null"]},
            },
        },
        "ReplayInput": {
            "type": "object",
            "additionalProperties": False,
            "description": "ids, or a filter (account, state, since, until) with a cursor",
            "properties": {
                "ids": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 5000,
                    "items": {"type": "integer", "minimum": 1},
                },
                "account": {"type": "string"},
                "state": {"type": "string", "enum": [s.value for s in InboxState]},
                "since": {"type": "string", "format": "date-time"},
                "until": {"type": "string", "format": "date-time"},
                "after": {"type": "string", "pattern": "^[0-9]+$"},
            },
        },
        "Counters": _COUNTERS,
        **_CLIENT_SCHEMAS,
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
    }
