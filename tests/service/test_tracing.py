"""AE_TRACING: a real `ae-serve` sends its spans to an OTLP collector (here, a stand-in in this process).

The request's server span continues the caller's W3C `traceparent`; its children are the stages the
request went through, each with real start and end times inside the server span.
"""

from __future__ import annotations

import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from bench.net import free_port
from service.config import Settings
from tests.service.conftest import png_bytes
from tests.service.server import running_server

pytest.importorskip("opentelemetry.exporter.otlp.proto.http", reason="the tracing extra is not installed")
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


class Collector:
    """An OTLP/HTTP trace endpoint that keeps every span it receives."""

    def __init__(self) -> None:
        self.spans: list[Any] = []
        self.arrived = threading.Condition()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                request = ExportTraceServiceRequest.FromString(body)
                with collector.arrived:
                    for resource in request.resource_spans:
                        for scope in resource.scope_spans:
                            collector.spans.extend(scope.spans)
                    collector.arrived.notify_all()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def wait_for(self, count: int, trace_id: bytes, timeout_s: float = 30) -> list[Any]:
        with self.arrived:
            self.arrived.wait_for(lambda: len([s for s in self.spans if s.trace_id == trace_id]) >= count, timeout_s)
            return [s for s in self.spans if s.trace_id == trace_id]


@pytest.fixture(scope="module")
def traced(tiny_models: Path) -> Iterator[tuple[str, Collector]]:
    collector = Collector()
    env = {
        "AE_TRACING": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100",  # ms: export soon after each request
    }
    with running_server(tiny_models, **env) as (_, base):
        yield base, collector
    collector.server.shutdown()


def test_a_request_is_one_server_span_continuing_the_callers_trace_with_its_stages(traced) -> None:
    base, collector = traced
    request = urllib.request.Request(
        f"{base}/v1/models/tiny-image/reconstruct",
        data=png_bytes(24, 40),
        headers={"content-type": "image/png", "traceparent": f"00-{TRACE_ID}-{CALLER_SPAN}-01"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status == 200
        request_id = response.headers["x-request-id"]
    spans = collector.wait_for(5, bytes.fromhex(TRACE_ID))
    (server,) = [s for s in spans if s.name == "POST /v1/models/{name}/reconstruct"]
    assert server.parent_span_id == bytes.fromhex(CALLER_SPAN)  # the caller's span is its parent
    attributes = {a.key: a.value for a in server.attributes}
    assert attributes["http.response.status_code"].int_value == 200
    assert attributes["request.id"].string_value == request_id
    stages = {s.name: s for s in spans if s is not server}
    # `queue` only when the request waited for the graph: this lone one ran as soon as it was prepared.
    assert (
        {"read body", "prepare", "run", "answer"} <= set(stages) <= {"read body", "prepare", "queue", "run", "answer"}
    )
    for stage in stages.values():
        assert stage.parent_span_id == server.span_id
        assert server.start_time_unix_nano <= stage.start_time_unix_nano <= stage.end_time_unix_nano
        assert stage.end_time_unix_nano <= server.end_time_unix_nano
    assert stages["prepare"].end_time_unix_nano <= stages["run"].start_time_unix_nano
    assert stages["run"].end_time_unix_nano <= stages["answer"].start_time_unix_nano


def test_a_request_without_traceparent_starts_its_own_trace(traced) -> None:
    base, collector = traced
    request = urllib.request.Request(f"{base}/v1/models/tiny-image/reconstruct", data=png_bytes(16, 16))
    request.add_header("content-type", "image/png")
    before = len(collector.spans)
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status == 200
    with collector.arrived:
        collector.arrived.wait_for(lambda: len(collector.spans) >= before + 5, 30)
        fresh = collector.spans[before:]
    roots = [s for s in fresh if s.name.startswith("POST ")]
    assert roots and not roots[0].parent_span_id and roots[0].trace_id != bytes.fromhex(TRACE_ID)


def test_tracing_without_its_packages_is_a_one_line_settings_error(monkeypatch) -> None:
    import service.config

    monkeypatch.setattr(service.config, "_module_missing", lambda name: True)
    with pytest.raises(ValueError, match=r"AE_TRACING=otlp needs the OpenTelemetry packages .*\[tracing\]"):
        Settings(tracing="otlp")
    assert Settings(tracing="off").tracing == "off"
