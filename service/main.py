"""Build the app: `create_app()` and its lifespan only. `uvicorn service.main:app` serves it."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from prometheus_client import Gauge

from service.api.auth import require_access, require_api_key_for_health, require_api_key_for_metrics
from service.api.docs import add_docs_routes
from service.api.rate_limit import rate_limiter_for
from service.api.routes import health, metrics, models, repository, ui
from service.api.routes.inference import add_inference_routes
from service.api.routes.oip import add_oip_routes
from service.batching import ProcessLoad
from service.config import Settings
from service.device_defaults import device_settings
from service.handlers import install_error_handlers
from service.kinds.sequence import SequenceHandler
from service.lazy import LazyVersions
from service.logs import configure_logging, set_worker_index
from service.metrics import ServiceMetrics
from service.middleware import RequestContextMiddleware
from service.model import LoadedModel
from service.model_control import ModelControl
from service.repository import ModelLoadError, ModelRepository
from service.startup import effective_settings, settings_or_exit
from service.state import ServiceState
from service.tracing import configure_tracing, shutdown_tracing
from service.worker_slot import claim_worker_index

if TYPE_CHECKING:
    import grpc

logger = logging.getLogger("service")


def _observe(metrics: ServiceMetrics, repository: ModelRepository) -> None:
    """Attach metrics to every engine and batcher and publish the loaded models."""
    for model in repository.loaded():
        _observe_model(metrics, model)


def _observe_model(metrics: ServiceMetrics, model: LoadedModel) -> None:
    """Attach metrics to one version's engines and batchers and publish it as loaded."""
    m = model.manifest
    _loaded_gauge(metrics, model).set(1)
    for role, engine in model.engines.items():
        metrics.observe_graph(m.name, role, engine, model.handler.batchers[role])
    if isinstance(model.handler, SequenceHandler):
        anomaly = model.manifest.anomaly
        threshold = anomaly.threshold if anomaly is not None else None
        model.handler.on_scored = metrics.observe_scores(m.name, str(m.version), threshold)


def _loaded_gauge(metrics: ServiceMetrics, model: LoadedModel) -> Gauge:
    """The `ae_model_loaded` series of one version (its name, version, task and providers)."""
    m = model.manifest
    return metrics.models.labels(m.name, str(m.version), m.task, ",".join(model.providers))


def _serving_hooks(
    metrics: ServiceMetrics, process: ProcessLoad
) -> tuple[Callable[[LoadedModel], None], Callable[[LoadedModel], None]]:
    """(start, forget) for versions loaded or dropped after start-up (lazily, or by model control).

    `start` attaches metrics and starts the handler like start-up does (on the event loop: the batchers
    belong to the running loop); `forget` sets the version's `ae_model_loaded` series to 0.
    """

    def start(model: LoadedModel) -> None:
        _observe_model(metrics, model)
        model.handler.start(process)

    def forget(model: LoadedModel) -> None:
        _loaded_gauge(metrics, model).set(0)

    return start, forget


def _lazy_versions(state: ServiceState, metrics: ServiceMetrics, process: ProcessLoad) -> LazyVersions:
    """Lazy loading of the versions streams name, with their handlers started and metrics attached like the rest."""
    assert state.repository is not None
    return LazyVersions(state.repository, state.settings, *_serving_hooks(metrics, process))


def _model_control(state: ServiceState, metrics: ServiceMetrics, process: ProcessLoad) -> ModelControl:
    """Index, load and unload without a restart; loaded versions start and are observed like the rest."""
    assert state.repository is not None
    return ModelControl(state.repository, state.settings, metrics, *_serving_hooks(metrics, process))


async def _load(state: ServiceState, metrics: ServiceMetrics, process: ProcessLoad) -> None:
    try:
        # Loading and warm-up block (hashing, session creation): keep the event loop free meanwhile.
        state.repository = await asyncio.to_thread(ModelRepository.load, state.settings)
    except ModelLoadError as error:
        logger.error("model repository failed to load: %s", error)
        raise
    _observe(metrics, state.repository)
    for model in state.repository.loaded():
        model.handler.start(process)
    state.ready = True
    loaded = sum(len(v) for v in state.repository.models.values())
    # The one start-up summary of this worker: what it serves and every setting it runs with.
    providers: list[str] = []
    for model in state.repository.loaded():
        providers += [p for p in model.providers if p not in providers]
    summary = {"settings": effective_settings(state.settings, providers)}
    if (readiness := state.readiness()) in ("ready", "partial"):
        logger.info("%s: %d model version(s) loaded, on %s", readiness, loaded, ", ".join(providers), extra=summary)
    else:  # the reasons were logged as each version failed
        failed = [failure.key for failure in state.repository.unserved()]
        logger.error(
            "not ready (%s): %d loaded, failed: %s (AE_ALLOW_PARTIAL serves the rest)",
            readiness,
            loaded,
            failed,
            extra=summary,
        )


# How long calls in flight on the gRPC server may take to finish once shutdown begins.
GRPC_GRACE_S = 5.0


async def _start_grpc(app: FastAPI, settings: Settings) -> grpc.aio.Server | None:
    """The OIP gRPC server on AE_GRPC_PORT, once the models are loaded; None when the port is 0."""
    if not settings.grpc_port:
        return None
    from service.oip.grpc_server import start_grpc_server  # grpc's import costs ~100 ms: only when asked

    # A message may be a whole body (AE_MAX_BODY_BYTES) plus the protocol's framing of its tensors.
    message_bytes = settings.max_body_bytes + 64 * 1024
    max_calls = settings.max_connections or None
    return await start_grpc_server(app, settings.host, settings.grpc_port, message_bytes, max_calls)


def _not_ready_on_sigterm(state: ServiceState) -> Callable[[], None]:
    """Chain a SIGTERM handler that drops readiness at once, before the server drains connections.

    uvicorn installs its own handler (stop accepting, finish in-flight requests, run the lifespan
    shutdown); ours runs first so load balancers stop routing here while requests still finish.
    Returns a function restoring the previous handler. Off the main thread (tests) it does nothing.
    """
    try:
        previous = signal.getsignal(signal.SIGTERM)

        def handler(signum: int, frame: Any) -> None:
            state.ready = False
            logger.info("SIGTERM: readiness off, finishing in-flight requests")
            if callable(previous):
                previous(signum, frame)

        signal.signal(signal.SIGTERM, handler)

        def restore() -> None:
            signal.signal(signal.SIGTERM, previous)

        return restore
    except ValueError:  # signal only works in the main thread
        return lambda: None


def create_app(settings: Settings | None = None) -> FastAPI:
    """A configured app; settings default to the environment (`AE_*`), exiting with one line per mistake."""
    state = ServiceState(settings or settings_or_exit("service.main"))
    service_metrics = ServiceMetrics()
    process = ProcessLoad()
    configure_logging(state.settings.log_level)
    worker = claim_worker_index(state.settings.worker_slots_dir)
    set_worker_index(worker)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        restore_signal = _not_ready_on_sigterm(state)
        configure_tracing(state.settings.tracing, f"worker-{worker}-pid-{os.getpid()}")
        # The batching defaults of the device the graphs will run on (probes the providers once, as
        # loading the models would); everything after this reads state.settings.
        state.settings = device_settings(state.settings)
        await _load(state, service_metrics, process)
        lazy_versions = app.state.lazy_versions = _lazy_versions(state, service_metrics, process)
        model_control = app.state.model_control = _model_control(state, service_metrics, process)
        await model_control.start()
        grpc_server = await _start_grpc(app, state.settings)
        try:
            yield
        finally:
            state.ready = False
            if grpc_server is not None:  # calls in flight get a few seconds; new ones are refused
                await grpc_server.stop(grace=GRPC_GRACE_S)
            await model_control.close()
            await lazy_versions.close()  # before the repository's versions stop: it may still add one
            if state.repository is not None:
                await asyncio.gather(*(model.handler.stop() for model in state.repository.loaded()))
            service_metrics.close()
            shutdown_tracing()
            restore_signal()
            logger.info("shut down")

    app = FastAPI(
        title="Autoencoder inference service",
        version="0.1.0",
        description="Encode, decode and reconstruct images and sequences with exported autoencoders "
        "(ONNX Runtime; CUDA when present, CPU otherwise).",
        lifespan=lifespan,
        # Served by `add_docs_routes` from local files instead (FastAPI's load Swagger UI from a CDN).
        docs_url=None,
        redoc_url=None,
    )
    app.state.service = state
    app.state.metrics = service_metrics
    app.state.rate_limiter = rate_limiter_for(state.settings)
    install_error_handlers(app)
    if state.settings.cors_origins:  # AE_CORS_ORIGINS; inside the request context, so preflights are logged
        app.add_middleware(
            CORSMiddleware,
            allow_origins=state.settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "Accept",
                "X-Request-Id",
                "X-Image-Height",
                "X-Image-Width",
                "X-Quality",
                "X-Target-Bpp",
                "X-Max-Bytes",
            ],
            expose_headers=[
                "X-Bits-Per-Pixel",
                "X-Quality",
                "X-PSNR",
                "X-Image-Height",
                "X-Image-Width",
                "X-Request-Id",
                "Retry-After",
            ],
            max_age=600,
        )
    app.add_middleware(RequestContextMiddleware, state=state, metrics=service_metrics)
    app.include_router(health.router, dependencies=[Depends(require_api_key_for_health)])
    app.include_router(metrics.router, dependencies=[Depends(require_api_key_for_metrics)])
    app.include_router(models.router, dependencies=[Depends(require_access)])
    app.include_router(repository.router)  # admin keys only: each route checks (`check_admin`)
    # The inference routes check the key and its rate limit themselves (`check_access`): no dependency to solve.
    add_inference_routes(app)
    add_oip_routes(app)  # the Open Inference Protocol (`/v2`) beside `/v1`
    add_docs_routes(app)
    app.include_router(ui.router)  # `/ui`: the web playground (public; its API calls carry the key)
    return app


app = create_app()
