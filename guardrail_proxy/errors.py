"""The proxy's one exception tree, and the one place that turns it into OpenAI error JSON.

    GuardrailProxyError            anything the proxy raises on purpose
    ├── ConfigError                 bad config or policy file; start-up stops (file, field, reason)
    ├── RequestError                the client's request is wrong (4xx)
    │   ├── BodyTooLarge            413
    │   ├── UnknownModel            404, code model_not_found
    │   ├── UnknownRoute            404, code route_not_found
    │   ├── Unauthorized            401, code invalid_api_key
    │   ├── RouteForbidden          403, the client's key was not given this route
    │   ├── RateLimited             429 with Retry-After: the client's key is over its rate limit
    │   ├── UnsupportedContent      400, content the guardrail cannot check (media, a prompt template)
    │   ├── ContentNotCheckable     400, the classifier refused this text (never a fail-open pass)
    │   └── TooManyChecks           413, more classifier calls than the route allows per request
    ├── ClassifierError             the classifier failed: transport, timeout, HTTP error, unparseable
    │                               answer. A fault, never a verdict; the pipeline applies the fail mode.
    ├── GuardrailUnavailable        fail-closed answer when a check could not run (503)
    │   ├── GuardrailOverloaded     503 with Retry-After: the classifier queue is full
    │   └── AuditUnavailable        503: the audit record could not be kept (a full backlog, a failed commit)
    └── UpstreamError               the chat model failed (status relayed for 4xx, 502/504 otherwise)

A policy violation is *not* an exception: it is a `Decision` value (see decisions.py).
"""

from __future__ import annotations

import math
from typing import Any


class GuardrailProxyError(Exception):
    status_code = 500
    error_type = "server_error"
    code: str | None = "internal_error"

    def __init__(self, message: str, *, param: str | None = None, detail: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.detail = detail  # for the log and the audit record only: may hold a peer's raw payload

    @property
    def logged(self) -> str:
        """The message with its detail: what the audit record and the log keep."""
        return f"{self.message}: {self.detail}" if self.detail else self.message

    def to_body(self) -> dict[str, Any]:
        return error_body(self.message, self.error_type, self.code, self.param)

    def headers(self) -> dict[str, str]:
        """Extra response headers (Retry-After on an overload)."""
        return {}


class ConfigError(GuardrailProxyError):
    """A config or policy file is wrong. Names the file, the field and the reason."""

    def __init__(self, file: str, field: str, reason: str) -> None:
        self.file, self.field, self.reason = file, field, reason
        where = f"{file}: {field}" if field else file
        super().__init__(f"{where}: {reason}")


class RequestError(GuardrailProxyError):
    status_code = 400
    error_type = "invalid_request_error"
    code = "invalid_request"


class BodyTooLarge(RequestError):
    status_code = 413
    code = "request_too_large"


class UnknownModel(RequestError):
    status_code = 404
    code = "model_not_found"


class UnknownRoute(RequestError):
    status_code = 404
    code = "route_not_found"


class Unauthorized(RequestError):
    status_code = 401
    code = "invalid_api_key"


class RouteForbidden(RequestError):
    status_code = 403
    error_type = "permission_error"
    code = "route_not_allowed"


class RateLimited(RequestError):
    status_code = 429
    error_type = "requests"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

    def headers(self) -> dict[str, str]:
        return {"retry-after": str(max(1, math.ceil(self.retry_after_s)))}


class UnsupportedContent(RequestError):
    code = "unsupported_content"


class ContentNotCheckable(RequestError):
    """The classifier refused this request's text (HTTP 400/413/422: too long for its context, say)."""

    code = "content_not_checkable"


class TooManyChecks(RequestError):
    status_code = 413
    code = "too_many_checks"


class ClassifierError(GuardrailProxyError):
    """The classifier could not give a verdict. `kind` is one of: transport, timeout, http (an outage-like
    HTTP error), malformed (a response body of the wrong shape), rejected (it refused this text), overload
    (it or our queue to it is full), unparseable (its answer is off-format, which a text can provoke)."""

    status_code = 503
    code = "guardrail_unavailable"

    def __init__(self, message: str, *, kind: str, retryable: bool = False) -> None:
        super().__init__(message)
        self.kind = kind
        self.retryable = retryable


class GuardrailUnavailable(GuardrailProxyError):
    status_code = 503
    error_type = "server_error"
    code = "guardrail_unavailable"


class GuardrailOverloaded(GuardrailUnavailable):
    """Too many checks waiting: retry later. Sent with Retry-After; counted apart from outages."""

    code = "guardrail_overloaded"

    def headers(self) -> dict[str, str]:
        return {"retry-after": "1"}


class AuditUnavailable(GuardrailUnavailable):
    """The request's record could not be kept: the backlog is full (when_full: refuse) or, under sync
    durability, its commit failed. Sent with Retry-After; nothing was lost silently."""

    code = "audit_unavailable"

    def headers(self) -> dict[str, str]:
        return {"retry-after": "1"}


class UpstreamError(GuardrailProxyError):
    error_type = "upstream_error"
    code = "upstream_error"

    def __init__(self, message: str, *, status_code: int = 502, error_type: str | None = None,
                 code: str | None = None, detail: str | None = None) -> None:
        super().__init__(message, detail=detail)
        self.status_code = status_code
        if error_type:
            self.error_type = error_type
        if code:
            self.code = code


def error_body(message: str, error_type: str, code: str | None, param: str | None = None,
               **extra: Any) -> dict[str, Any]:
    """The OpenAI error envelope: {"error": {"message", "type", "param", "code", ...}}."""
    return {"error": {"message": message, "type": error_type, "param": param, "code": code, **extra}}
