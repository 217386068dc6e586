"""Build the app: `create_app()` and its lifespan only. `uvicorn service.main:app` serves it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from service.api.routes import health, inference, models
from service.config import Settings
from service.handlers import install_error_handlers
from service.repository import ModelLoadError, ModelRepository
from service.state import ServiceState

logger = logging.getLogger("service")


async def _load(state: ServiceState) -> None:
    try:
        # Loading and warm-up are blocking (file hashing, session creation); keep the event loop free
        # so /health/live answers while a large repository loads.
        state.repository = await asyncio.to_thread(ModelRepository.load, state.settings)
    except ModelLoadError as error:
        state.load_error = str(error)
        logger.error("model repository failed to load: %s", error)
        raise
    state.ready = True
    logger.info("ready: %d model version(s) loaded", sum(len(v) for v in state.repository.models.values()))


def create_app(settings: Settings | None = None) -> FastAPI:
    """A configured app; settings default to the environment (`AE_*`)."""
    state = ServiceState(settings or Settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await _load(state)
        yield
        state.ready = False  # stop taking traffic first; in-flight requests finish before exit
        logger.info("shutting down")

    app = FastAPI(
        title="Autoencoder inference service",
        version="0.1.0",
        description="Encode, decode and reconstruct images and sequences with exported autoencoders "
        "(ONNX Runtime; CUDA when present, CPU otherwise).",
        lifespan=lifespan,
    )
    app.state.service = state
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(models.router)
    app.include_router(inference.router)
    return app


app = create_app()
