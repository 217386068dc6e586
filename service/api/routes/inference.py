"""encode, decode and reconstruct, for the default version and for an explicit one.

Each route checks the API key and its rate limit, finds the addressed model version, and hands the
request to the handler of the model's kind (`service.kinds`), which owns the rest of the request path.
The routes are FastAPI routes (FastAPI's router matches them and OpenAPI documents them) whose handler is the
endpoint itself: FastAPI solves no dependencies and validates no parameters for them, so the path
parameters are read and checked here. Measured in process (a lone ECG encode, median of 2700): 770 us
through FastAPI's request handler, 710 us with the endpoint as the handler.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.routing import APIRoute

from service.api.auth import check_access
from service.api.deps import ready_repository
from service.api.openapi import DECODE_DOC, ENCODE_DOC, PATH_PARAMETERS, RECONSTRUCT_DOC
from service.errors import InvalidInputError
from service.state import ServiceState

Endpoint = Callable[[Request], Coroutine[Any, Any, Response]]
# The most digits a version may have: more is refused rather than parsed.
_VERSION_DIGITS = 9


class InferenceRoute(APIRoute):
    """An APIRoute served by its endpoint directly, `Request -> Response`, with no dependency solving."""

    def get_route_handler(self) -> Endpoint:
        """The endpoint itself (it reads what it needs from the request)."""
        endpoint: Endpoint = self.endpoint
        return endpoint


def _version(request: Request) -> int | None:
    text = request.path_params.get("version")
    if text is None:
        return None
    if not (text.isascii() and text.isdigit() and len(text) <= _VERSION_DIGITS):
        raise InvalidInputError(f"path.version: the version must be a number of at most {_VERSION_DIGITS} digits")
    return int(text)


def _endpoint(operation: str) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        check_access(request)  # API key, then its rate limit: before the body is read
        state: ServiceState = request.app.state.service
        model = ready_repository(state).get(request.path_params["name"], _version(request))
        return await model.handler.answer(operation, request)

    endpoint.__name__ = operation
    return endpoint


def add_inference_routes(app: FastAPI) -> None:
    """Add the six inference routes to `app`."""
    for prefix in ("/v1/models/{name}", "/v1/models/{name}/versions/{version}"):
        versioned = "{version}" in prefix
        for operation, doc in (("encode", ENCODE_DOC), ("decode", DECODE_DOC), ("reconstruct", RECONSTRUCT_DOC)):
            app.router.add_api_route(
                f"{prefix}/{operation}",
                _endpoint(operation),
                methods=["POST"],
                tags=["inference"],
                summary=f"{operation.capitalize()} ({'a given version' if versioned else 'the default version'})",
                operation_id=f"{operation}{'_version' if versioned else ''}",
                response_class=Response,
                route_class_override=InferenceRoute,
                **{**doc, "openapi_extra": {**doc["openapi_extra"], "parameters": PATH_PARAMETERS[versioned]}},
            )
