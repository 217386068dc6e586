"""The model repository extension of the Open Inference Protocol (Triton's): index, load, unload.

Every route needs an admin key (AE_ADMIN_KEYS), inference keys are refused with 403. What the calls do
depends on AE_MODEL_CONTROL (`service.model_control`, docs/model-control.md).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from service.api.bodies import read_body
from service.api.oip_openapi import OIP_ERRORS
from service.errors import DecodingError
from service.model_control import ModelControl
from service.model_control_errors import UnsupportedParameterError

router = APIRouter(prefix="/v2/repository", tags=["model repository"], responses=OIP_ERRORS)

# Triton's unload parameter; a model here has no dependents, so it changes nothing.
_UNLOAD_PARAMETERS = {"unload_dependents"}


class RepositoryIndexEntry(BaseModel):
    """One model version: `state` is READY, UNAVAILABLE, LOADING or UNLOADING; `reason` says why when not READY."""

    name: str
    version: str
    state: str
    reason: str


async def admin_control(request: Request) -> ModelControl:
    """The app's model control, once the request carries an admin key (401 / 403 otherwise)."""
    control: ModelControl = request.app.state.model_control
    control.check_admin(request.headers.get("authorization"))
    return control


ModelControlDep = Annotated[ModelControl, Depends(admin_control)]


# A repository call's body is a few parameters: anything larger is refused before it is read whole.
MAX_CONTROL_BODY_BYTES = 64 * 1024


async def _json_object(request: Request) -> dict[str, Any]:
    """The request's JSON object body; {} for an empty body (the body is optional on every route)."""
    settings = request.app.state.service.settings
    body = await read_body(request, MAX_CONTROL_BODY_BYTES, settings.body_read_timeout_s)
    if not body.strip():
        return {}
    try:
        payload = json.loads(body)
    except ValueError as error:
        raise DecodingError(f"the body is not JSON: {error}") from None
    if not isinstance(payload, dict):
        raise DecodingError("the body must be a JSON object")
    return payload


def _parameters(payload: dict[str, Any], supported: set[str]) -> dict[str, Any]:
    parameters = payload.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise DecodingError('"parameters" must be a JSON object')
    if unsupported := sorted(set(parameters) - supported):
        raise UnsupportedParameterError(
            f"unsupported parameters {unsupported}: models load from the repository folder as they are "
            "(no config or file overrides)"
        )
    return parameters


@router.post("/index", response_model=list[RepositoryIndexEntry], summary="List the repository's model versions")
async def repository_index(request: Request, control: ModelControlDep) -> list[RepositoryIndexEntry]:
    """Every model version on disk or serving; `{"ready": true}` lists the READY ones only."""
    ready = (await _json_object(request)).get("ready", False)
    if not isinstance(ready, bool):
        raise DecodingError('"ready" must be true or false')
    entries = await control.index(ready_only=ready)
    return [RepositoryIndexEntry(name=e.name, version=e.version, state=e.state, reason=e.reason) for e in entries]


@router.post("/models/{name}/load", summary="Load or reload a model from the repository folder")
async def load_model(name: str, request: Request, control: ModelControlDep) -> dict[str, Any]:
    """The versions the version policy names, new or changed ones loaded and warmed before they serve."""
    _parameters(await _json_object(request), supported=set())
    await control.load(name)
    return {}


@router.post("/models/{name}/unload", summary="Unload a model")
async def unload_model(name: str, request: Request, control: ModelControlDep) -> dict[str, Any]:
    """Stop routing to the model at once; answers once the requests in flight on it have finished."""
    _parameters(await _json_object(request), supported=_UNLOAD_PARAMETERS)
    await control.unload(name)
    return {}
