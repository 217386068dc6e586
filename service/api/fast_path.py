"""The inference routes without FastAPI's per-request routing and dependency solving.

encode, decode and reconstruct are the hot path. FastAPI matches a request against every route in
turn and then solves the route's dependencies (the API-key check, then the model lookup) with
generic machinery that inspects signatures and validates parameters: about 0.3 ms of a 3 ms
sequence request on the 2-core dev machine, paid again for every request.

This ASGI layer answers exactly the requests it fully understands,
`POST /v1/models/{name}[/versions/{digits}]/{encode|decode|reconstruct}`, by running the same checks
(API key, readiness, model lookup) and the same endpoint functions, and turns errors into answers
with the app's own exception handlers. Everything else falls through to FastAPI: other methods
(405), versions that are not plain numbers (FastAPI's 422), the docs. The routes stay registered
with FastAPI too, so OpenAPI documents them and they behave the same with this layer removed.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from fastapi import Request, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.auth import check_api_key
from service.api.deps import Inference, get_inference
from service.api.routes.inference import decode, encode, reconstruct

Endpoint = Callable[[Request, Inference], Awaitable[Response]]

# A version of more than 9 digits falls through: FastAPI's integer validation then answers it.
_ROUTE = re.compile(r"/v1/models/(?P<name>[^/]+)(?:/versions/(?P<version>[0-9]{1,9}))?/(?P<operation>[a-z]+)")
_ENDPOINTS: dict[str, Endpoint] = {"encode": encode, "decode": decode, "reconstruct": reconstruct}


class InferenceFastPath:
    """Serve the inference routes directly; pass every other request to the wrapped app."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer an inference request, or hand the request on unchanged."""
        match = _ROUTE.fullmatch(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        endpoint = _ENDPOINTS.get(match["operation"]) if match else None
        if match is None or endpoint is None:
            await self.app(scope, receive, send)
            return
        version = match["version"]
        # What FastAPI's router would record: the access-log middleware labels metrics with it.
        scope["path_params"] = {"name": match["name"], **({"version": version} if version else {})}
        request = Request(scope, receive)
        try:
            check_api_key(request)
            inference = await get_inference(request, match["name"], int(version) if version else None)
            response = await endpoint(request, inference)
        except Exception as error:  # every error goes to the app's handlers, as in FastAPI
            response = await _handled(request, error)
        await response(scope, receive, send)


async def _handled(request: Request, error: Exception) -> Response:
    """The answer the app's exception handlers give for `error` (the most specific class wins)."""
    handlers = request.app.exception_handlers
    for cls in type(error).__mro__:
        if cls in handlers:
            response: Response = await handlers[cls](request, error)
            return response
    raise error
