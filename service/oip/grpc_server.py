"""The Open Inference Protocol over gRPC: `inference.GRPCInferenceService` on `AE_GRPC_PORT`.

The servicer runs on the worker's event loop (grpc.aio) beside uvicorn and shares everything with HTTP:
the repository and its batchers (so gRPC and HTTP requests batch together), the API keys (gRPC metadata
`authorization: Bearer <key>`) and their rate limits, admission, deadlines (the smaller of the call's and
AE_REQUEST_TIMEOUT_S), request metrics (`ae_requests` with the HTTP status an error would have), and
model control (`app.state.model_control`, admin keys). Each worker process binds the port with
SO_REUSEPORT, so with `ae-serve --workers N` the kernel spreads gRPC connections over the N workers, as
it spreads HTTP connections over uvicorn's shared socket.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any, TypeVar

import grpc
from fastapi import FastAPI

from service.api.auth import check_key
from service.api.deps import ready_repository
from service.api.routes.oip import EXTENSIONS, SERVER_NAME
from service.errors import InvalidInputError, ServiceError
from service.oip.grpc_generated import inference_pb2 as pb
from service.oip.grpc_generated import inference_pb2_grpc as pb_grpc
from service.oip.grpc_messages import infer_request, infer_response
from service.oip.models import OipModel, resolve
from service.oip.serving import run_inference
from service.state import ServiceState

logger = logging.getLogger(__name__)
access = logging.getLogger("service.access")
T = TypeVar("T")

# The gRPC status of each HTTP status the service's errors carry.
_GRPC_CODES = {
    HTTPStatus.UNAUTHORIZED: grpc.StatusCode.UNAUTHENTICATED,
    HTTPStatus.FORBIDDEN: grpc.StatusCode.PERMISSION_DENIED,
    HTTPStatus.CONFLICT: grpc.StatusCode.FAILED_PRECONDITION,
    HTTPStatus.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    HTTPStatus.TOO_MANY_REQUESTS: grpc.StatusCode.RESOURCE_EXHAUSTED,
    HTTPStatus.REQUEST_ENTITY_TOO_LARGE: grpc.StatusCode.RESOURCE_EXHAUSTED,
    HTTPStatus.SERVICE_UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    HTTPStatus.GATEWAY_TIMEOUT: grpc.StatusCode.DEADLINE_EXCEEDED,
    HTTPStatus.REQUEST_TIMEOUT: grpc.StatusCode.DEADLINE_EXCEEDED,
    HTTPStatus.INTERNAL_SERVER_ERROR: grpc.StatusCode.INTERNAL,
    499: grpc.StatusCode.CANCELLED,
}


def grpc_code(status: int) -> grpc.StatusCode:
    """The gRPC status of an HTTP status: other 4xx are INVALID_ARGUMENT, other 5xx INTERNAL."""
    if status in _GRPC_CODES:
        return _GRPC_CODES[status]
    return grpc.StatusCode.INVALID_ARGUMENT if 400 <= status < 500 else grpc.StatusCode.INTERNAL


def _authorization(context: grpc.aio.ServicerContext) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            return str(value)
    return None


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    """The protocol's methods over the app's state; errors become gRPC statuses with the service's message."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    @property
    def state(self) -> ServiceState:
        """The app's state (settings, repository, readiness)."""
        state: ServiceState = self.app.state.service
        return state

    def _check_access(self, context: grpc.aio.ServicerContext) -> None:
        index = check_key(self.state.settings.api_keys, _authorization(context))
        limiter = getattr(self.app.state, "rate_limiter", None)
        if limiter is not None and index is not None:
            limiter.check(index)

    async def _guarded(self, context: grpc.aio.ServicerContext, call: Callable[[], Awaitable[T]]) -> T:
        try:
            return await call()
        except ServiceError as error:
            await context.abort(grpc_code(error.status), error.message)
        except Exception:
            logger.exception("unhandled error in a gRPC call")
            await context.abort(grpc.StatusCode.INTERNAL, "internal server error")
        raise AssertionError("context.abort raises")

    def _model(self, name: str, version: str) -> OipModel:
        return resolve(ready_repository(self.state), name, version or None)

    async def ServerLive(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802 (the protocol's name)
        """Live while the process runs."""
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        """Ready as `/health/ready` is."""
        return pb.ServerReadyResponse(ready=self.state.readiness() in ("ready", "partial"))

    async def ModelReady(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        """Whether the OIP model (at the version, or its default) is loaded and serving."""

        async def ready() -> Any:
            self._check_access(context)
            try:
                self._model(request.name, request.version)
            except ServiceError as error:
                if error.status in (HTTPStatus.UNAUTHORIZED, HTTPStatus.TOO_MANY_REQUESTS):
                    raise
                return pb.ModelReadyResponse(ready=False)
            return pb.ModelReadyResponse(ready=True)

        return await self._guarded(context, ready)

    async def ServerMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        """Name, version and extensions, as `GET /v2`."""

        async def metadata() -> Any:
            self._check_access(context)
            return pb.ServerMetadataResponse(name=SERVER_NAME, version=self.app.version, extensions=EXTENSIONS)

        return await self._guarded(context, metadata)

    async def ModelMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        """Inputs, outputs and versions, as `GET /v2/models/{name}`."""

        async def metadata() -> Any:
            self._check_access(context)
            oip = self._model(request.name, request.version)
            versions = sorted(ready_repository(self.state).models.get(oip.model.manifest.name, {}))
            answer = oip.metadata(versions)
            response = pb.ModelMetadataResponse(
                name=answer["name"], versions=answer["versions"], platform=answer["platform"]
            )
            for spec in oip.inputs():
                response.inputs.add(name=spec.name, datatype=spec.datatype, shape=list(spec.shape))
            for spec in oip.outputs():
                response.outputs.add(name=spec.name, datatype=spec.datatype, shape=list(spec.shape))
            return response

        return await self._guarded(context, metadata)

    async def ModelInfer(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        """One inference, raw or typed contents in, raw contents out."""
        started, status, labels = time.perf_counter(), 500, ("unknown", "unknown", "infer")

        async def infer() -> Any:
            nonlocal status, labels
            try:
                self._check_access(context)
                oip = self._model(request.model_name, request.model_version)
                labels = (oip.model.manifest.name, oip.version, oip.operation)
                settings = self.state.settings
                parsed, outputs = await run_inference(oip, settings, lambda: infer_request(request), request.ByteSize())
            except ServiceError as error:
                status = int(error.status)
                raise
            except asyncio.CancelledError:
                status = 499  # the client cancelled the call: its work was abandoned
                raise
            status = 200
            return infer_response(oip.name, oip.version, parsed.id, outputs)

        try:
            return await self._guarded(context, infer)
        finally:
            self._observe(labels, status, time.perf_counter() - started)

    def _observe(self, labels: tuple[str, str, str], status: int, elapsed: float) -> None:
        metrics = self.app.state.metrics
        metrics.requests.labels(*labels, str(status)).inc()
        metrics.latency.labels(*labels).observe(elapsed)
        line = {"method": "gRPC", "path": "/inference.GRPCInferenceService/ModelInfer", "status": status}
        access.info("request", extra={**line, "duration_ms": round(elapsed * 1000, 2)})

    async def RepositoryIndex(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        """The repository's models and their states (admin key)."""

        async def index() -> Any:
            control = self.app.state.model_control
            control.check_admin(_authorization(context))
            response = pb.RepositoryIndexResponse()
            for entry in await control.index(ready_only=request.ready):
                response.models.add(name=entry.name, version=entry.version, state=entry.state, reason=entry.reason)
            return response

        return await self._guarded(context, index)

    async def RepositoryModelLoad(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        """Load or reload a model from the repository (admin key; AE_MODEL_CONTROL=explicit)."""

        async def load() -> Any:
            control = self.app.state.model_control
            control.check_admin(_authorization(context))
            if request.parameters:
                raise _unsupported_parameters(request.parameters)
            await control.load(request.model_name)
            return pb.RepositoryModelLoadResponse()

        return await self._guarded(context, load)

    async def RepositoryModelUnload(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        """Unload a model; its requests in flight finish (admin key; AE_MODEL_CONTROL=explicit)."""

        async def unload() -> Any:
            control = self.app.state.model_control
            control.check_admin(_authorization(context))
            # tritonclient always sends `unload_dependents`; there are no dependent models here to unload.
            if unknown := set(request.parameters) - {"unload_dependents"}:
                raise _unsupported_parameters(unknown)
            await control.unload(request.model_name)
            return pb.RepositoryModelUnloadResponse()

        return await self._guarded(context, unload)


def _unsupported_parameters(parameters: Any) -> ServiceError:
    """400 naming the parameters a load or unload does not take."""
    return InvalidInputError(f"load and unload take no parameters here; got {', '.join(sorted(parameters))}")


async def start_grpc_server(
    app: FastAPI, host: str, port: int, max_message_bytes: int, max_calls: int | None
) -> grpc.aio.Server:
    """Serve the protocol on `host:port` (SO_REUSEPORT: every worker binds it); the started server.

    `max_calls` bounds the calls in progress per worker, as AE_MAX_CONNECTIONS bounds HTTP connections
    (beyond it a call is refused with RESOURCE_EXHAUSTED): each may hold a message of `max_message_bytes`.
    """
    options = [
        ("grpc.so_reuseport", 1),
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", -1),
    ]
    server = grpc.aio.server(options=options, maximum_concurrent_rpcs=max_calls)
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(app), server)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if server.add_insecure_port(address) == 0:
        raise RuntimeError(f"gRPC could not bind {address}")
    await server.start()
    logger.info("OIP gRPC listening on %s", address)
    return server
