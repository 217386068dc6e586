"""What the client raises: the server's error code and message, or why no answer came.

Every failure is a `ClientError`. An answer with an error status is a `ServiceError` carrying the HTTP
status and the server's own `code` and `message` (the body `{"error": {"code", "message"}}`); the
status picks a subclass so callers can catch what they can act on (`UnauthorizedError`, `OverloadedError`, ...)
without parsing strings. A request refused before anything is sent (an option the served model does
not offer) is an `UnsupportedOptionError`.
"""

from __future__ import annotations

import json
from http import HTTPStatus


class ClientError(Exception):
    """Base of everything this package raises."""


class UnsupportedOptionError(ClientError):
    """A request the served model cannot honour, refused before anything was sent."""


class ServiceUnreachableError(ClientError):
    """No HTTP answer: connection refused, DNS failure, or the client's timeout ran out."""


class ServiceError(ClientError):
    """An answer with an error status: the status, the server's error code and its message."""

    def __init__(self, status: int, code: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


class BadRequestError(ServiceError):
    """400: the body could not be read (broken image, not a stream, bad JSON)."""


class UnauthorizedError(ServiceError):
    """401: API keys are configured and this request had no valid one."""


class NotFoundError(ServiceError):
    """404: unknown model, version or path."""


class UnsupportedOperationError(ServiceError):
    """409: the model does not offer this operation."""


class PayloadTooLargeError(ServiceError):
    """413: body, pixels or metadata over the server's limits."""


class InvalidInputError(ServiceError):
    """422: readable but invalid (NaN, wrong shape, batch or length over the limit)."""


class RateLimitedError(ServiceError):
    """429: the API key is over its request rate; `retry_after` says when to try again."""


class OverloadedError(ServiceError):
    """503: queue full, models loading, shutting down, or a version that failed to load."""


class GatewayTimeoutError(ServiceError):
    """504: the request ran longer than the server's request timeout."""


_BY_STATUS: dict[int, type[ServiceError]] = {
    HTTPStatus.BAD_REQUEST: BadRequestError,
    HTTPStatus.UNAUTHORIZED: UnauthorizedError,
    HTTPStatus.NOT_FOUND: NotFoundError,
    HTTPStatus.CONFLICT: UnsupportedOperationError,
    HTTPStatus.REQUEST_ENTITY_TOO_LARGE: PayloadTooLargeError,
    HTTPStatus.UNPROCESSABLE_ENTITY: InvalidInputError,
    HTTPStatus.TOO_MANY_REQUESTS: RateLimitedError,
    HTTPStatus.SERVICE_UNAVAILABLE: OverloadedError,
    HTTPStatus.GATEWAY_TIMEOUT: GatewayTimeoutError,
}


def error_from_answer(status: int, body: bytes, retry_after: float | None = None) -> ServiceError:
    """The exception for an error answer; a body that is not ours (a proxy's page) becomes `http_error`."""
    code, message = "http_error", body[:200].decode("utf-8", "replace").strip() or f"HTTP {status}"
    try:
        error = json.loads(body)["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        pass
    return _BY_STATUS.get(status, ServiceError)(status, code, message, retry_after)
