"""Shared request dependencies as `Annotated` aliases.

They are `async def` on purpose: FastAPI runs plain `def` dependencies in the thread pool, which
would cost a thread hop per dependency per request for what are attribute lookups.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from service.config import Settings
from service.errors import NotReadyError, PayloadTooLargeError
from service.repository import LoadedModel, ModelRepository
from service.runner import PipelineRunner
from service.state import ServiceState


async def get_state(request: Request) -> ServiceState:
    """The app's state object (settings, repository, readiness)."""
    state: ServiceState = request.app.state.service
    return state


async def get_settings(state: Annotated[ServiceState, Depends(get_state)]) -> Settings:
    """The settings the app was built with."""
    return state.settings


async def get_repository(state: Annotated[ServiceState, Depends(get_state)]) -> ModelRepository:
    """The loaded repository; 503 until loading and warm-up are done, and again during shutdown."""
    if not state.ready or state.repository is None:
        raise NotReadyError(
            "models are loading or the service is shutting down; retry shortly", headers={"Retry-After": "1"}
        )
    return state.repository


async def get_runner(request: Request) -> PipelineRunner:
    """The app's pipeline runner (thread pool, timeout, queue gauge)."""
    runner: PipelineRunner = request.app.state.runner
    return runner


StateDep = Annotated[ServiceState, Depends(get_state)]
RunnerDep = Annotated[PipelineRunner, Depends(get_runner)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
RepositoryDep = Annotated[ModelRepository, Depends(get_repository)]


async def get_model(name: str, repository: RepositoryDep, version: int | None = None) -> LoadedModel:
    """The addressed model: the highest version unless the path names one."""
    return repository.get(name, version)


ModelDep = Annotated[LoadedModel, Depends(get_model)]


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing more than `limit` bytes without reading them all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(f"body of {declared} bytes exceeds the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
