"""Errors that become JSON responses: `{"error": {"message", "type", "code"}}`.

The message always says what the caller should change (4xx) or that it should retry (5xx).
"""

from __future__ import annotations

from s2_plugin.protocol import ErrorBody, ErrorDetail


class SidecarError(Exception):
    status = 500
    type = "server_error"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.headers: dict[str, str] = {}


class BadRequest(SidecarError):
    status = 400
    type = "invalid_request_error"


class Unauthorized(SidecarError):
    status = 401
    type = "authentication_error"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message, code)
        self.headers["WWW-Authenticate"] = 'Bearer realm="s2-sidecar"'


class NotFound(SidecarError):
    status = 404
    type = "not_found_error"


class Conflict(SidecarError):
    status = 409
    type = "conflict_error"


class TooLarge(SidecarError):
    status = 413
    type = "invalid_request_error"


class UnsupportedMedia(SidecarError):
    status = 415
    type = "invalid_request_error"


class RequestTimeout(SidecarError):
    status = 408
    type = "invalid_request_error"


class Unavailable(SidecarError):
    """The engine cannot serve right now (starting, restarting, overloaded): retry later."""

    status = 503
    type = "engine_unavailable"

    def __init__(self, message: str, code: str | None = None, *, retry_after: int = 1) -> None:
        super().__init__(message, code)
        self.headers["Retry-After"] = str(retry_after)


class EngineFailed(SidecarError):
    """The engine failed on this request in a way a retry would repeat; its log says why."""

    status = 502
    type = "engine_error"


def error_json(status: int, message: str, code: str | None, type_: str | None = None) -> str:
    """The JSON error body every failure answers with, in OpenAI's shape."""
    kind = type_ or ("server_error" if status >= 500 else "invalid_request_error")
    return ErrorBody(error=ErrorDetail(message=message, type=kind, code=code)).model_dump_json()
