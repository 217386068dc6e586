"""The error taxonomy: each class carries its HTTP status, a stable code and a safe message.

Routes and codecs raise these; one handler in `service.main` turns them into
`{"error": {"code": ..., "message": ...}}`. Anything else becomes a generic 500 whose body
never carries exception text.
"""

from __future__ import annotations

from http import HTTPStatus


class ServiceError(Exception):
    """Base class: `status` and `code` are the HTTP contract, `message` is shown to the client."""

    status: int = HTTPStatus.INTERNAL_SERVER_ERROR
    code: str = "internal_error"

    def __init__(self, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class DecodingError(ServiceError):
    """The body could not be decoded (broken image, invalid JSON, corrupted bitstream)."""

    status = HTTPStatus.BAD_REQUEST
    code = "undecodable_body"


class UnauthorizedError(ServiceError):
    """Missing or wrong API key."""

    status = HTTPStatus.UNAUTHORIZED
    code = "unauthorized"


class RateLimitedError(ServiceError):
    """The API key has used up its request rate (AE_RATE_LIMIT_PER_S); `Retry-After` says when to retry."""

    status = HTTPStatus.TOO_MANY_REQUESTS
    code = "rate_limited"


class NotFoundError(ServiceError):
    """Unknown model, version or route."""

    status = HTTPStatus.NOT_FOUND
    code = "not_found"


class UnsupportedOperationError(ServiceError):
    """The model exists but does not offer this operation (e.g. decode on a skip-connection model)."""

    status = HTTPStatus.CONFLICT
    code = "unsupported_operation"


class PayloadTooLargeError(ServiceError):
    """Body bytes or image pixels over the configured limit."""

    status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    code = "payload_too_large"


class UnsupportedMediaTypeError(ServiceError):
    """A content type this operation does not accept."""

    status = HTTPStatus.UNSUPPORTED_MEDIA_TYPE
    code = "unsupported_media_type"


class NotAcceptableError(ServiceError):
    """The client's Accept header names no format we can produce."""

    status = HTTPStatus.NOT_ACCEPTABLE
    code = "not_acceptable"


class InvalidInputError(ServiceError):
    """Well-formed but invalid values (NaN, ragged or empty series, wrong shapes)."""

    status = HTTPStatus.UNPROCESSABLE_ENTITY
    code = "invalid_input"


class NotReadyError(ServiceError):
    """Models are still loading or the service is shutting down."""

    status = HTTPStatus.SERVICE_UNAVAILABLE
    code = "not_ready"


class ModelUnavailableError(ServiceError):
    """The addressed version (or the model's default version) failed to load; the reason is logged."""

    status = HTTPStatus.SERVICE_UNAVAILABLE
    code = "model_unavailable"


class BodyTimeoutError(ServiceError):
    """The client did not send its whole body within the body read timeout; the connection is closed."""

    status = HTTPStatus.REQUEST_TIMEOUT
    code = "body_timeout"


class OverloadedError(ServiceError):
    """The request queue is full; the client should retry later."""

    status = HTTPStatus.SERVICE_UNAVAILABLE
    code = "overloaded"


class RequestTimeoutError(ServiceError):
    """The request did not finish within the configured timeout."""

    status = HTTPStatus.GATEWAY_TIMEOUT
    code = "timeout"


class ClientGoneError(ServiceError):
    """The client disconnected before its answer was ready: its work was dropped or discarded.

    Nobody reads this answer; its status (499, nginx's "client closed request") labels the request in
    the access log and the metrics, apart from the service's own failures.
    """

    status = 499
    code = "client_gone"
