"""Optional OpenTelemetry tracing: `AE_TRACING=console|otlp` (default `off`), extra `tracing`.

Each HTTP request is one server span that continues the caller's W3C `traceparent` (and `tracestate`),
named by its route template (`POST /v1/models/{name}/reconstruct`), with its status and request id.
Its children are the stages the request went through: `read body`, then per graph run `prepare`,
`queue` (waiting for the graph), `run` (the graph's batch) and `answer` (crop, encode, serialise).

The batcher's stages run in worker threads and one graph run serves a batch of requests, so their spans
are not opened around the work: a job records the clock as it enters each phase (`Job.enter`, one
`time.time_ns()` per phase) and `record_job` writes the spans from those marks, with their real start
and end times, when the request's run is over. With tracing off nothing of OpenTelemetry is imported
and each hook is a no-op.

`otlp` sends spans in batches to the collector the standard variables name
(`OTEL_EXPORTER_OTLP_ENDPOINT`, default http://localhost:4318); `console` writes each span as JSON on
stdout. gRPC calls are not traced.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any, Literal

from starlette.types import Scope

if TYPE_CHECKING:
    from service.stages import Job

TracingMode = Literal["off", "console", "otlp"]
SERVICE_NAME = "autoencoder-service"
# A job's phases, in order, and the span each becomes (it ends when the next phase starts).
_SPAN_OF_PHASE = {"preparing": "prepare", "queued": "queue", "running": "run", "finishing": "answer"}


class _Tracer:
    """The hooks the request path calls; this one does nothing (tracing off)."""

    def request(self, scope: Scope) -> AbstractContextManager[Any]:
        """The server span of one HTTP request, current while the request is handled."""
        return nullcontext()

    def finish_request(self, span: Any, scope: Scope, status: int, request_id: str) -> None:
        """Name the span by its route and record the answer, once the request is handled."""

    def span(self, name: str) -> AbstractContextManager[Any]:
        """A child span of the current one around a block (`read body`)."""
        return nullcontext()

    def record_job(self, job: Job[Any, Any], graph: str) -> None:
        """The spans of a job's phases, from the marks it recorded (see the module doc)."""

    def shutdown(self) -> None:
        """Flush and stop the exporter."""


class _OpenTelemetryTracer(_Tracer):
    def __init__(self, mode: TracingMode, worker: str) -> None:
        from opentelemetry import propagate, trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor

        attributes: dict[str, str | int] = {"service.instance.id": worker, "process.pid": os.getpid()}
        if "OTEL_SERVICE_NAME" not in os.environ:
            attributes["service.name"] = SERVICE_NAME
        self._provider = TracerProvider(resource=Resource.create(attributes))
        if mode == "console":
            self._provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            self._provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        self._tracer = self._provider.get_tracer("service")
        self._trace = trace
        self._propagate = propagate

    @contextmanager
    def request(self, scope: Scope) -> Iterator[Any]:
        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
        parent = self._propagate.extract(carrier)
        kind = self._trace.SpanKind.SERVER
        with self._tracer.start_as_current_span(scope["method"], context=parent, kind=kind) as span:
            yield span

    def finish_request(self, span: Any, scope: Scope, status: int, request_id: str) -> None:
        route = getattr(scope.get("route"), "path", None) or scope.get("path", "")
        span.update_name(f"{scope['method']} {route}")
        span.set_attribute("http.request.method", scope["method"])
        span.set_attribute("http.route", route)
        span.set_attribute("http.response.status_code", status)
        span.set_attribute("request.id", request_id)
        if status >= 500:
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR))

    def span(self, name: str) -> AbstractContextManager[Any]:
        return self._tracer.start_as_current_span(name)

    def record_job(self, job: Job[Any, Any], graph: str) -> None:
        ended = time.time_ns()
        marks = [*job.marks, ("ended", ended)]
        for (phase, start), (_, end) in itertools.pairwise(marks):
            span = self._tracer.start_span(_SPAN_OF_PHASE[phase], start_time=start, attributes={"graph": graph})
            span.end(end_time=end)

    def shutdown(self) -> None:
        self._provider.shutdown()


_active: _Tracer = _Tracer()


def tracer() -> _Tracer:
    """The process's tracer (a no-op unless `configure_tracing` turned tracing on)."""
    return _active


def configure_tracing(mode: TracingMode, worker: str) -> None:
    """Turn tracing on (or off) in this process as AE_TRACING says (Settings checked its packages)."""
    global _active
    _active.shutdown()
    _active = _Tracer() if mode == "off" else _OpenTelemetryTracer(mode, worker)


def shutdown_tracing() -> None:
    """Flush the spans still buffered (otlp) and turn tracing off."""
    global _active
    _active.shutdown()
    _active = _Tracer()
