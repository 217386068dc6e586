"""Per-request context: request id in and out, one JSON access line (with the error code), request metrics.

A plain ASGI middleware (not BaseHTTPMiddleware): it adds no task or stream copy per request.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.logs import RequestNotes, request_id_var, request_notes_var
from service.metrics import ServiceMetrics
from service.state import ServiceState
from service.tracing import tracer

logger = logging.getLogger("service.access")
_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_OPERATIONS = {"encode", "decode", "reconstruct"}


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            text = value.decode("latin-1")
            # A client id is echoed only when it is safe to log and to put in a header.
            if _VALID_ID.match(text):
                return text
    return uuid.uuid4().hex


class RequestContextMiddleware:
    """Request id, access log and request metrics around every HTTP request."""

    def __init__(self, app: ASGIApp, state: ServiceState, metrics: ServiceMetrics) -> None:
        self.app = app
        self.state = state
        self.metrics = metrics

    def _labels(self, scope: Scope) -> tuple[str, str, str] | None:
        """(model, version, operation) of an inference request; None for other routes."""
        operation = scope.get("path", "").rsplit("/", 1)[-1]
        path_params = scope.get("path_params", {})
        name = path_params.get("name", "")
        if operation == "infer":  # OIP: `/v2/models/MODEL.OPERATION/infer`, counted as `/v1`'s operation
            name, _, operation = name.rpartition(".")
        if operation not in _OPERATIONS:
            return None
        repository = self.state.repository
        # Only loaded names and versions become label values: random ones must not grow the metric set.
        if repository is None or name not in repository.models:
            return "unknown", "unknown", operation
        # Without a version in the path the default version served (the one `ModelRepository.get` picks).
        text = path_params.get("version")
        if text is None:
            version = repository.default_version(name)
        else:  # as the route reads it: at most 9 ASCII digits (more is refused, and never parsed here)
            version = int(text) if text.isascii() and text.isdigit() and len(text) <= 9 else None
        served = version is not None and version in repository.models[name]
        return name, (str(version) if served else "unknown"), operation

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Wrap one ASGI call."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        token = request_id_var.set(request_id)
        notes = RequestNotes()
        notes_token = request_notes_var.set(notes)
        started = time.perf_counter()
        status: dict[str, Any] = {"code": 500}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        with tracer().request(scope) as span:  # AE_TRACING: continues the caller's traceparent
            try:
                await self.app(scope, receive, send_with_id)
            except Exception:
                # Unhandled: the outermost handler answers 500 `internal_error` after this line is written.
                notes.error_code = notes.error_code or "internal_error"
                raise
            finally:
                tracer().finish_request(span, scope, status["code"], request_id)
                self._account(scope, started, status["code"], notes)
                request_notes_var.reset(notes_token)
                request_id_var.reset(token)

    def _account(self, scope: Scope, started: float, status: int, notes: RequestNotes) -> None:
        """The request's metrics and its access line."""
        elapsed = time.perf_counter() - started
        labels = self._labels(scope)
        if labels is not None:
            self.metrics.requests.labels(*labels, str(status)).inc()
            self.metrics.latency.labels(*labels).observe(elapsed)
        line: dict[str, Any] = {
            "method": scope["method"],
            "path": scope["path"],
            "status": status,
            "duration_ms": round(elapsed * 1000, 2),
        }
        if notes.error_code is not None:
            line["code"] = notes.error_code
        logger.info("request", extra=line)
