"""Gateway errors and their rendering in each caller's protocol.

Every failure a client can see is a ``GatewayError``; this module is the one place that turns it
into bytes, in Anthropic's or OpenAI's shape, as a response or as a final stream event.
"""

from __future__ import annotations

import orjson

# Anthropic error type -> (HTTP status, OpenAI error type, OpenAI code)
_TYPES: dict[str, tuple[int, str, str | None]] = {
    "invalid_request_error": (400, "invalid_request_error", None),
    "authentication_error": (401, "authentication_error", "invalid_api_key"),
    "billing_error": (402, "insufficient_quota", "insufficient_quota"),
    "permission_error": (403, "permission_error", "model_not_allowed"),
    "not_found_error": (404, "invalid_request_error", "not_found"),
    "request_too_large": (413, "invalid_request_error", "request_too_large"),
    "rate_limit_error": (429, "rate_limit_error", "rate_limit_exceeded"),
    "api_error": (500, "server_error", None),
    "timeout_error": (504, "timeout_error", "timeout"),
    "overloaded_error": (529, "overloaded_error", "overloaded"),
}

_STATUS_TO_TYPE = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    413: "request_too_large",
    422: "invalid_request_error",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
    503: "overloaded_error",
}


_NO_RETRY = frozenset({400, 401, 402, 403, 404, 405, 413, 422})


def shown(value: object, limit: int = 120) -> str:
    """``repr(value)`` cut to ``limit`` characters: a client's own input is echoed, never in bulk."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


class GatewayError(Exception):
    """An error with the status and type a client should see. ``message`` is safe to show."""

    def __init__(
        self,
        type_: str,
        message: str,
        *,
        status: int | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
        retryable: bool = False,
    ) -> None:
        super().__init__(message)
        if type_ not in _TYPES:
            type_ = "api_error"
        self.type = type_
        self.message = message
        self.status = status or _TYPES[type_][0]
        self.param = param
        self.headers = headers or {}
        self.retryable = retryable

    def response_headers(self) -> dict[str, str]:
        """The error's own headers plus ``x-should-retry``: true when a retry may succeed, false
        when only a changed request can (Anthropic's SDKs and Claude Code read it)."""
        out = dict(self.headers)
        if self.retryable:
            out["x-should-retry"] = "true"
        elif self.status in _NO_RETRY:
            out["x-should-retry"] = "false"
        return out

    def anthropic_body(self, request_id: str | None = None) -> bytes:
        body: dict[str, object] = {"type": "error", "error": {"type": self.type, "message": self.message}}
        if request_id:
            body["request_id"] = request_id
        return orjson.dumps(body)

    def openai_error(self) -> dict[str, object]:
        _, otype, code = _TYPES[self.type]
        return {"message": self.message, "type": otype, "param": self.param, "code": code}

    def openai_body(self) -> bytes:
        return orjson.dumps({"error": self.openai_error()})

    def anthropic_event(self) -> bytes:
        data = orjson.dumps({"type": "error", "error": {"type": self.type, "message": self.message}})
        return b"event: error\ndata: " + data + b"\n\n"

    def openai_event(self) -> bytes:
        return b"data: " + orjson.dumps({"error": self.openai_error()}) + b"\n\n"


def type_for_status(status: int) -> str:
    if status in _STATUS_TO_TYPE:
        return _STATUS_TO_TYPE[status]
    if 400 <= status < 500:
        return "invalid_request_error"
    return "api_error"


def bad_request(message: str, param: str | None = None) -> GatewayError:
    return GatewayError("invalid_request_error", message, param=param)
