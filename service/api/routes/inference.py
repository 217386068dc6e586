"""encode, decode and reconstruct, for the default version and for an explicit one.

Each route checks the API key and its rate limit, finds the addressed model version, and hands the
request to the handler of the model's kind (`service.kinds`), which owns the rest of the request path.
The routes are plain `Request -> Response` functions: FastAPI solves no dependencies and validates no
parameters for them (that cost ~0.3 ms per request), and the path parameters are read and checked here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request, Response

from service.api.auth import check_access
from service.api.deps import ready_repository
from service.api.openapi import DECODE_DOC, ENCODE_DOC, PATH_PARAMETERS, RECONSTRUCT_DOC
from service.errors import InvalidInputError
from service.state import ServiceState

router = APIRouter(tags=["inference"])
# The most digits a version may have: more is refused rather than parsed.
_VERSION_DIGITS = 9


def _version(request: Request) -> int | None:
    text = request.path_params.get("version")
    if text is None:
        return None
    if not (text.isascii() and text.isdigit() and len(text) <= _VERSION_DIGITS):
        raise InvalidInputError(f"path.version: the version must be a number of at most {_VERSION_DIGITS} digits")
    return int(text)


def _operation(name: str) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        check_access(request)  # API key, then its rate limit: before the body is read
        state: ServiceState = request.app.state.service
        model = ready_repository(state).get(request.path_params["name"], _version(request))
        return await model.handler.answer(name, request)

    endpoint.__name__ = name
    return endpoint


for _prefix in ("/v1/models/{name}", "/v1/models/{name}/versions/{version}"):
    _versioned = "{version}" in _prefix
    for _name, _doc in (("encode", ENCODE_DOC), ("decode", DECODE_DOC), ("reconstruct", RECONSTRUCT_DOC)):
        router.add_api_route(
            f"{_prefix}/{_name}",
            _operation(_name),
            methods=["POST"],
            summary=f"{_name.capitalize()} ({'a given version' if _versioned else 'the default version'})",
            operation_id=f"{_name}{'_version' if _versioned else ''}",
            response_class=Response,
            **{**_doc, "openapi_extra": {**_doc["openapi_extra"], "parameters": PATH_PARAMETERS[_versioned]}},
        )
