"""Who may call a callback URL: the account's key in the URL, then its provider's own
signature. Shared by the delivery-report endpoint (`service.ingest`) and the inbound
route (`service.callbacks`)."""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence

from handlers import handler_for
from handlers.base import CallbackRequest
from service.accounts import new_callback_secret
from service.errors import Forbidden, Unauthorized
from service.model import Account
from service.ratelimit import CALLBACK_AUTH, FailedAuthentications

SECRET_PARAM = "key"  # noqa: S105 - the parameter's name, not a secret
# Names the auto-reply a provider sent from a callback's answer (TwiML), on the
# status URL given with it: the provider's reports then find that message.
REPLY_PARAM = "ref"
_OURS = frozenset({SECRET_PARAM, REPLY_PARAM})
_DECOY_SECRET = new_callback_secret()


def authenticate(
    account: Account | None,
    query: Sequence[tuple[str, str]],
    failures: FailedAuthentications,
    address: str,
) -> Account:
    """The account, when the URL's key is its callback secret.

    An unknown account is compared with a decoy and refused like a wrong key, with the
    same work, answer and count: account names cannot be found by asking.
    """
    given = next((v for k, v in query if k == SECRET_PARAM), "")
    expected = account.callback_secret if account is not None else _DECOY_SECRET
    key_matches = hmac.compare_digest(given.encode(), expected.encode())
    if account is None or not given or not key_matches:
        refused = (
            Unauthorized("the callback URL's key is missing", field=SECRET_PARAM)
            if not given
            else Forbidden("the callback URL's account and key do not match", field=SECRET_PARAM)
        )
        raise failures.refusal(address, CALLBACK_AUTH, refused)
    return account


def callback_request(
    account: Account,
    method: str,
    public_url: str,
    query: Sequence[tuple[str, str]],
    headers: Mapping[str, str],
    body: bytes,
) -> CallbackRequest:
    """The callback as the account's handler reads it, after its signature is checked;
    `public_url` is the URL as the provider called it, which signatures cover."""
    callback = CallbackRequest(
        method=method,
        url=public_url,
        query=[(k, v) for k, v in query if k not in _OURS],
        headers=headers,
        body=body,
    )
    handler_for(account.provider).authenticate(account, callback)
    return callback


def reply_ref(query: Sequence[tuple[str, str]]) -> str:
    return next((v for k, v in query if k == REPLY_PARAM), "")
