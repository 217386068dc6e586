"""The Open Inference Protocol over REST: `/v2` health, server and model metadata, model readiness, infer.

Thin routes over `service.oip`: the same API keys, rate limits, admission, batchers and metrics as
`/v1`; errors in the protocol's body, `{"error": "<message>"}` (see `service.handlers`). Model names are
`MODEL.OPERATION` (`service.oip.models`). The repository extension (load, unload, index) is in
`repository.py`.
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse

from service.api.auth import check_access, require_access, require_api_key_for_health
from service.api.bodies import read_body
from service.api.deps import ready_repository
from service.api.oip_openapi import INFER_DOC, OIP_ERRORS
from service.api.routes.inference import InferenceRoute
from service.kinds.base import cancelled_on_disconnect
from service.oip.models import OipModel, resolve
from service.oip.rest import HEADER_LENGTH, header_length, infer_response_body, parse_infer_body
from service.oip.serving import run_inference
from service.state import ServiceState
from service.tracing import tracer

SERVER_NAME = "autoencoder-service"
# What `GET /v2` lists: the binary-tensor extension, and the repository extension (`repository.py`).
EXTENSIONS = ["binary_tensor_data", "model_repository"]
# Outputs above this many bytes are serialized in a worker thread, not on the event loop.
_INLINE_ANSWER_BYTES = 64 * 1024

health = APIRouter(
    prefix="/v2/health", tags=["oip"], dependencies=[Depends(require_api_key_for_health)], responses=OIP_ERRORS
)
metadata = APIRouter(prefix="/v2", tags=["oip"], dependencies=[Depends(require_access)], responses=OIP_ERRORS)


@health.get("/live", summary="OIP: the server is live")
async def live() -> dict[str, bool]:
    """200 `{"live": true}` while the process runs."""
    return {"live": True}


@health.get(
    "/ready",
    summary="OIP: the server is ready",
    responses={503: {"description": "not ready", "content": {"application/json": {"example": {"ready": False}}}}},
)
async def ready(request: Request) -> JSONResponse:
    """200 `{"ready": true}` when `/health/ready` would answer 200; 503 `{"ready": false}` otherwise."""
    state: ServiceState = request.app.state.service
    is_ready = state.readiness() in ("ready", "partial")
    return JSONResponse({"ready": is_ready}, status_code=200 if is_ready else 503)


@metadata.get("", summary="OIP: server metadata")
async def server_metadata(request: Request) -> dict[str, Any]:
    """The server's name, version and the protocol extensions it speaks."""
    return {"name": SERVER_NAME, "version": request.app.version, "extensions": EXTENSIONS}


def _model(request: Request, name: str, version: str | None) -> OipModel:
    return resolve(ready_repository(request.app.state.service), name, version)


def _versions(request: Request, oip: OipModel) -> list[int]:
    repository = ready_repository(request.app.state.service)
    return sorted(repository.models.get(oip.model.manifest.name, {}))


@metadata.get("/models/{name}", summary="OIP: model metadata (default version)")
async def model_metadata(request: Request, name: str) -> dict[str, Any]:
    """Inputs, outputs, versions and platform of the OIP model `MODEL.OPERATION`."""
    oip = _model(request, name, None)
    return oip.metadata(_versions(request, oip))


@metadata.get("/models/{name}/versions/{version}", summary="OIP: model metadata (a given version)")
async def model_version_metadata(request: Request, name: str, version: str) -> dict[str, Any]:
    """As `GET /v2/models/{name}`, for one version."""
    oip = _model(request, name, version)
    return oip.metadata(_versions(request, oip))


@metadata.get("/models/{name}/ready", summary="OIP: model readiness (default version)")
async def model_ready(request: Request, name: str) -> dict[str, Any]:
    """200 when the model's default version is loaded and serving; 404/503 (with the reason) when not."""
    return {"name": _model(request, name, None).name, "ready": True}


@metadata.get("/models/{name}/versions/{version}/ready", summary="OIP: model readiness (a given version)")
async def model_version_ready(request: Request, name: str, version: str) -> dict[str, Any]:
    """As `GET /v2/models/{name}/ready`, for one version."""
    oip = _model(request, name, version)
    return {"name": oip.name, "version": oip.version, "ready": True}


async def infer(request: Request) -> Response:
    """`POST /v2/models/{name}[/versions/{version}]/infer`: JSON or binary tensors in, tensors out."""
    check_access(request)  # API key, then its rate limit: before the body is read
    oip = _model(request, request.path_params["name"], request.path_params.get("version"))
    settings = request.app.state.service.settings
    with tracer().span("read body"):
        body = await read_body(request, settings.max_body_bytes, settings.body_read_timeout_s)
    json_length = header_length(request.headers.get(HEADER_LENGTH), len(body))
    async with cancelled_on_disconnect(request):
        parsed, outputs = await run_inference(oip, settings, partial(parse_infer_body, body, json_length), len(body))
        answer = partial(infer_response_body, oip.name, oip.version, parsed, outputs)
        size = sum(t.nbytes for t in outputs)
        content, headers = answer() if size <= _INLINE_ANSWER_BYTES else await asyncio.to_thread(answer)
    return Response(content, headers=headers)


def add_oip_routes(app: FastAPI) -> None:
    """Add the `/v2` routes: health, metadata, readiness and infer (the repository extension is separate)."""
    app.include_router(health)
    app.include_router(metadata)
    for path in ("/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer"):
        app.router.add_api_route(
            path,
            infer,
            methods=["POST"],
            tags=["oip"],
            summary="OIP: inference (JSON tensors, or the binary-tensor extension)",
            operation_id="oip_infer_version" if "{version}" in path else "oip_infer",
            response_class=Response,
            route_class_override=InferenceRoute,
            **INFER_DOC,
        )
