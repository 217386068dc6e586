"""Shared request dependencies as `Annotated` aliases.

They are `async def` on purpose: FastAPI runs plain `def` dependencies in the thread pool, which
would cost a thread hop per dependency per request for what are attribute lookups.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from service.config import Settings
from service.errors import BodyTimeoutError, NotReadyError, PayloadTooLargeError
from service.repository import LoadedModel, ModelRepository
from service.runner import PipelineRunner
from service.state import ServiceState


async def get_state(request: Request) -> ServiceState:
    """The app's state object (settings, repository, readiness)."""
    state: ServiceState = request.app.state.service
    return state


def ready_repository(state: ServiceState) -> ModelRepository:
    """The loaded repository; 503 until loading and warm-up are done, and again during shutdown."""
    if not state.ready or state.repository is None:
        raise NotReadyError(
            "models are loading or the service is shutting down; retry shortly", headers={"Retry-After": "1"}
        )
    return state.repository


async def get_repository(state: Annotated[ServiceState, Depends(get_state)]) -> ModelRepository:
    """Dependency form of `ready_repository`."""
    return ready_repository(state)


StateDep = Annotated[ServiceState, Depends(get_state)]
RepositoryDep = Annotated[ModelRepository, Depends(get_repository)]


@dataclass(frozen=True)
class Inference:
    """Everything an inference route needs, resolved by one dependency.

    One node instead of a chain (state -> repository -> model, settings, runner): FastAPI's
    dependency solving costs a measurable fraction of a millisecond per node on every request.
    """

    model: LoadedModel
    settings: Settings
    runner: PipelineRunner


async def get_inference(request: Request, name: str, version: int | None = None) -> Inference:
    """The addressed model (the highest version unless the path names one), settings and runner."""
    state: ServiceState = request.app.state.service
    model = ready_repository(state).get(name, version)
    return Inference(model, state.settings, request.app.state.runner)


InferenceDep = Annotated[Inference, Depends(get_inference)]


async def read_body(request: Request, limit: int, timeout_s: float) -> bytes:
    """The request body within `timeout_s`, refusing more than `limit` bytes without reading them all.

    Past the deadline: 408 with `Connection: close`, so a client trickling its body is cut off.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(f"body of {declared} bytes exceeds the limit of {limit} bytes")
    chunks, size = [], 0
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLargeError(f"body exceeds the limit of {limit} bytes")
                chunks.append(chunk)
    except TimeoutError as error:
        message = f"the body was not received within {timeout_s:g} s"
        raise BodyTimeoutError(message, headers={"Connection": "close"}) from error
    return b"".join(chunks)
