"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from service.api.deps import StateDep
from service.schemas import LiveResponse, ReadyResponse

router = APIRouter(prefix="/health", tags=["health"])


@router.get("/live", response_model=LiveResponse, summary="The process is up")
async def live() -> LiveResponse:
    """Always 200 while the process runs (use it for restarts, not for routing traffic)."""
    return LiveResponse()


@router.get(
    "/ready",
    response_model=ReadyResponse,
    summary="Models loaded and warmed",
    responses={503: {"model": ReadyResponse, "description": "loading, failed, or shutting down"}},
)
async def ready(state: StateDep) -> JSONResponse:
    """200 once every model is loaded and warmed; 503 before that and once shutdown begins."""
    repository = state.repository
    body = ReadyResponse(
        ready=state.ready,
        models=sum(len(v) for v in repository.models.values()) if repository else 0,
        failures=repository.failures if repository else ({"repository": state.load_error} if state.load_error else {}),
    )
    return JSONResponse(body.model_dump(), status_code=200 if state.ready else 503)
