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
    responses={503: {"model": ReadyResponse, "description": "loading, a version failed, no models, or shutting down"}},
)
async def ready(state: StateDep) -> JSONResponse:
    """200 once every version the policy names is loaded and warmed (AE_ALLOW_PARTIAL: those that loaded).

    503 before that, while a version failed, with no models at all, and once shutdown begins. The route
    is open by default, so it names the failed versions only: the reasons are on `GET /v1/models`.
    """
    repository = state.repository
    status = state.readiness()
    body = ReadyResponse(
        ready=status in ("ready", "partial"),
        status=status,
        models=sum(len(v) for v in repository.models.values()) if repository else 0,
        failed=[failure.key for failure in repository.unserved()] if repository else [],
    )
    return JSONResponse(body.model_dump(), status_code=200 if body.ready else 503)
