"""Shared request dependencies as `Annotated` aliases.

They are `async def` on purpose: FastAPI runs plain `def` dependencies in the thread pool, which
would cost a thread hop per dependency per request for what are attribute lookups.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from service.errors import NotReadyError
from service.repository import ModelRepository
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
