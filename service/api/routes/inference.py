"""encode, decode and reconstruct, for the default version and for an explicit one; decode of any stream.

Each route checks the API key and its rate limit, finds the addressed model version, and hands the
request to the handler of the model's kind (`service.kinds`), which owns the rest of the request path.
The routes are FastAPI routes (FastAPI's router matches them and OpenAPI documents them) whose handler is the
endpoint itself: FastAPI solves no dependencies and validates no parameters for them, so the path
parameters are read and checked here. Measured in process (a lone ECG encode, median of 2700): 770 us
through FastAPI's request handler, 710 us with the endpoint as the handler.

Compressed streams name the model version that wrote them. `POST /v1/decode` reads that name and version
off the stream's header and decodes it with exactly that version; a codec's own decode route (the default
version) follows the header the same way when the stream was written by another version of that model.
A version the policy leaves on disk is loaded on first use (`service.lazy`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.routing import APIRoute
from starlette.types import Message

from service.api.auth import check_access
from service.api.bodies import media_type, read_body, require_media
from service.api.deps import ready_repository
from service.api.openapi import (
    DECODE_DOC,
    DECODE_STREAM_DOC,
    ENCODE_DOC,
    PATH_PARAMETERS,
    RATE_PARAMETERS,
    RECONSTRUCT_DOC,
)
from service.codecs.bitstream import MIME as STREAM
from service.codecs.bitstream import read_origin, read_stream
from service.errors import DecodingError, InvalidInputError
from service.kinds.base import ModelHandler
from service.kinds.codec import stream_authentication
from service.lazy import LazyVersions
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
        name, version = request.path_params["name"], _version(request)
        model = ready_repository(state).get(name, version)
        if operation == "decode" and version is None and _is_stream_for(model.handler, request):
            return await _decode_default_or_origin(request, name, model.manifest.version)
        return await model.handler.answer(operation, request)

    endpoint.__name__ = operation
    return endpoint


def _is_stream_for(handler: ModelHandler, request: Request) -> bool:
    """Whether a decode request carries a stream for a codec (whose header may name another version)."""
    return handler.decodes_streams() and media_type(request) == STREAM


async def _decode_default_or_origin(request: Request, name: str, default: int) -> Response:
    """A codec's decode route: its default version, or the version of the same model that wrote the stream.

    A stream of another model, or naming a version that is not on disk, goes to the default version, whose
    answer (400) names the model and version that wrote it.
    """
    body = await _stream_body(request)
    origin = read_origin(body)
    repository = ready_repository(request.app.state.service)
    follow = origin.name == name and repository.on_disk(name, origin.version)
    return await _decode_with(request, body, name, origin.version if follow else default)


async def decode_stream(request: Request) -> Response:
    """`POST /v1/decode`: decode a stream with the model version its header names."""
    check_access(request)
    ready_repository(request.app.state.service)  # 503 while loading or stopping: before the body is read
    require_media(request, STREAM)
    body = await _stream_body(request)
    origin = read_origin(body)  # 400 for anything that is not a stream, before any lookup
    return await _decode_with(request, body, origin.name, origin.version)


async def _stream_body(request: Request) -> bytes:
    settings = request.app.state.service.settings
    return await read_body(request, settings.max_body_bytes, settings.body_read_timeout_s)


async def _decode_with(request: Request, body: bytes, name: str, version: int) -> Response:
    """Decode `body` with `name`/`version`, loading that version first if the policy leaves it on disk."""
    lazy: LazyVersions = request.app.state.lazy_versions
    if lazy.would_load(name, version):
        # Only an intact stream (and, with AE_STREAM_KEY, one this service signed) may cost a load: the
        # checksum and signature cover the whole body, so this runs in a worker thread.
        settings = request.app.state.service.settings
        await asyncio.to_thread(read_stream, body, stream_authentication(settings))
    async with lazy.serving(name, version) as model:
        if not model.handler.decodes_streams():
            raise DecodingError(f"the stream names {name}/{version}, which is not a compression model")
        # The request metrics label the version that served, not the route's default.
        request.scope["path_params"] = {"name": name, "version": str(version)}
        return await model.handler.answer("decode", _replaying(request, body))


def _replaying(request: Request, body: bytes) -> Request:
    """The request as the handler reads it: the body already read first, then the connection's own messages.

    The connection's messages still come through, so the handler sees a client disconnect (499).
    """
    replayed = False

    async def receive() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await request.receive()

    return Request(request.scope, receive)


def _parameters(operation: str, versioned: bool) -> list[dict[str, Any]]:
    """The route's documented parameters: its path's, and a codec's rate control where it encodes."""
    return PATH_PARAMETERS[versioned] + (RATE_PARAMETERS if operation in ("encode", "reconstruct") else [])


def add_inference_routes(app: FastAPI) -> None:
    """Add the six inference routes to `app`, and `POST /v1/decode`."""
    app.router.add_api_route(
        "/v1/decode",
        decode_stream,
        methods=["POST"],
        tags=["inference"],
        summary="Decode a stream with the model version that wrote it",
        operation_id="decode_stream",
        response_class=Response,
        route_class_override=InferenceRoute,
        **DECODE_STREAM_DOC,
    )
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
                **{**doc, "openapi_extra": {**doc["openapi_extra"], "parameters": _parameters(operation, versioned)}},
            )
