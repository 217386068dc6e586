"""The one place errors become HTTP answers: `{"error": {"code": ..., "message": ...}}`.

Under `/v2` (the Open Inference Protocol) the body is the protocol's instead: `{"error": "<message>"}`,
with the stable code beside it as `"code"` (clients of the protocol read `error` as a string).
"""

from __future__ import annotations

import logging
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.errors import ServiceError
from service.logs import note_error_code

logger = logging.getLogger(__name__)

_HTTP_CODES = {
    HTTPStatus.NOT_FOUND: "not_found",
    HTTPStatus.METHOD_NOT_ALLOWED: "method_not_allowed",
    HTTPStatus.BAD_REQUEST: "bad_request",
}


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The error body every failure shares; its code also goes on the request's access line."""
    note_error_code(code)
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def _answer(
    request: Request, status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """`error_response`, or on the OIP routes (`/v2`) the protocol's error body."""
    if request.url.path == "/v2" or request.url.path.startswith("/v2/"):
        note_error_code(code)
        return JSONResponse({"error": message, "code": code}, status_code=status, headers=headers)
    return error_response(status, code, message, headers)


async def _service_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, ServiceError)
    return _answer(request, error.status, error.code, error.message, error.headers)


async def _validation_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    first = error.errors()[0] if error.errors() else {}
    where = ".".join(str(p) for p in first.get("loc", ()))
    return _answer(request, 422, "invalid_input", f"{where}: {first.get('msg', 'invalid value')}")


async def _http_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    code = _HTTP_CODES.get(HTTPStatus(error.status_code), "http_error")
    return _answer(request, error.status_code, code, str(error.detail), getattr(error, "headers", None))


async def _unexpected(request: Request, error: Exception) -> JSONResponse:
    # Logged with its traceback for operators; the client sees nothing of it.
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return _answer(request, 500, "internal_error", "internal server error")


def install_error_handlers(app: FastAPI) -> None:
    """Route every failure through the one error body."""
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
