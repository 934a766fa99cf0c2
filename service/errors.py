"""The one error hierarchy of smsgw.

Every failure a client can cause is a `SmsgwError` subclass; each carries the HTTP
status it maps to, and `service.app` turns any of them into the contract's body
`{"error": {"code", "message", "field"}}` in a single exception handler.
"""

from __future__ import annotations


class SmsgwError(Exception):
    status: int = 400
    code: str = "bad_request"

    def __init__(self, message: str, *, field: str = "", code: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        if code:
            self.code = code

    def as_body(self) -> dict[str, dict[str, str]]:
        return {"error": {"code": self.code, "message": self.message, "field": self.field}}

    def headers(self) -> dict[str, str]:
        """Response headers that belong to this error."""
        return {}


class BadRequest(SmsgwError):
    """The request cannot be read (malformed JSON, wrong content type, bad cursor)."""

    status = 400
    code = "bad_request"


class Unparseable(BadRequest):
    """Input that `service.parsing` cannot read: JSON that is malformed, non-finite,
    nested too deep or carries an integer past 64 bits."""


class ValidationFailed(SmsgwError):
    """The request was read but a field is invalid; `field` names it."""

    status = 422
    code = "invalid"


class Unauthorized(SmsgwError):
    status = 401
    code = "unauthorized"


class Forbidden(SmsgwError):
    status = 403
    code = "forbidden"


class NotFound(SmsgwError):
    status = 404
    code = "not_found"


class Conflict(SmsgwError):
    status = 409
    code = "conflict"


class PayloadTooLarge(SmsgwError):
    status = 413
    code = "payload_too_large"


class TooManyRequests(SmsgwError):
    """Too many requests: failed authentications, by default; `Retry-After` says when
    to try again."""

    status = 429
    code = "too_many_requests"

    def __init__(self, message: str, *, retry_after: int, field: str = "") -> None:
        super().__init__(message, field=field)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"retry-after": str(self.retry_after)}


class QuotaExceeded(TooManyRequests):
    """A client's send would pass its day or month quota; `Retry-After` is the reset."""

    code = "quota_exceeded"


class RateLimited(TooManyRequests):
    """A client sends faster than its `rate_per_second`."""

    code = "rate_limited"


class ProviderFailed(SmsgwError):
    """A provider call made on a client's behalf (balance) failed or answered nonsense."""

    status = 502
    code = "provider_error"


class MethodNotAllowed(SmsgwError):
    status = 405
    code = "method_not_allowed"

    def __init__(self, message: str, *, allow: str) -> None:
        super().__init__(message)
        self.allow = allow

    def headers(self) -> dict[str, str]:
        return {"allow": self.allow}


class Unavailable(SmsgwError):
    """The store cannot commit now, or the service is too busy; callers (and providers)
    should retry, after `retry_after` seconds when it is given."""

    status = 503
    code = "unavailable"

    def __init__(
        self, message: str, *, field: str = "", code: str = "", retry_after: int | None = None
    ) -> None:
        super().__init__(message, field=field, code=code)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {} if self.retry_after is None else {"retry-after": str(self.retry_after)}


class CallbackInvalid(ValidationFailed):
    """A provider callback that its handler cannot read."""

    code = "invalid_callback"


class SettingsError(Exception):
    """A setting has a bad value; raised at start-up, never mapped to HTTP."""
