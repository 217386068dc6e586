"""Prometheus metrics, one registry per app (so several apps in one process do not collide).

With several worker processes (`ae-serve` sets PROMETHEUS_MULTIPROC_DIR for them) every worker writes
its values to that folder and a scrape, answered by any one worker, reads all of them.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

from service.batching import MicroBatcher
from service.engine import OnnxEngine

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
# Reconstruction errors are MSE in normalised units: well-reconstructed series sit near 0.01-0.1,
# series a model does not know near 0.5 and above (ecg-anomaly's card).
_ERROR_BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


class ServiceMetrics:
    """Requests, latencies, inference time, batch sizes, queue depth and loaded models."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "ae_requests",
            "HTTP requests by model, version, operation and status",
            ["model", "version", "operation", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "ae_request_latency_seconds",
            "End-to-end request latency",
            ["model", "version", "operation"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.inference = Histogram(
            "ae_inference_seconds",
            "ONNX Runtime run time per batch",
            ["model", "graph"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "ae_batch_size", "Items per ONNX Runtime run", ["model", "graph"], buckets=_BATCH_BUCKETS, registry=r
        )
        # Across workers: queue depths add up; a model is loaded if any live worker loaded it.
        self.queue_depth = Gauge(
            "ae_queue_depth",
            "Requests waiting for or in inference",
            ["model"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.abandoned = Counter(
            "ae_abandoned_requests",
            "Requests abandoned (client disconnected, deadline passed) by the phase they reached; "
            "only `running` and `finishing` ran their graph",
            ["model", "graph", "reason", "phase"],
            registry=r,
        )
        self.models = Gauge(
            "ae_model_loaded",
            "Loaded model versions and the providers they run on",
            ["model", "version", "task", "providers"],
            registry=r,
            multiprocess_mode="livemax",
        )
        # Model control (`service.model_control`): loads and unloads by outcome (success, failure).
        self.model_control = Counter(
            "ae_model_control",
            "Model loads and unloads (repository API, poll, control file) by outcome",
            ["model", "action", "outcome"],
            registry=r,
        )

        # Drift: how far incoming series sit from what each sequence model knows. Counters and
        # histograms add up across workers; the share above the threshold is a query (README).
        self.reconstruction_error = Histogram(
            "ae_reconstruction_error",
            "Per-series reconstruction error (MSE, normalised units) of sequence reconstruct answers",
            ["model", "version"],
            buckets=_ERROR_BUCKETS,
            registry=r,
        )
        self.series_scored = Counter(
            "ae_series_scored", "Series scored by sequence reconstruct", ["model", "version"], registry=r
        )
        self.series_above_threshold = Counter(
            "ae_series_above_threshold",
            "Series whose error is above the model's stored (calibrated) threshold, whatever threshold the caller sent",
            ["model", "version"],
            registry=r,
        )

    def observe_scores(self, model: str, version: str, threshold: float | None) -> Callable[[list[float]], None]:
        """A callback for a sequence model's per-series errors: histogram, scored and flagged counts."""
        errors = self.reconstruction_error.labels(model, version)
        scored = self.series_scored.labels(model, version)
        above = self.series_above_threshold.labels(model, version)
        above.inc(0)  # exported from the start, so the share query has both series

        def on_scored(values: list[float]) -> None:
            for value in values:
                errors.observe(value)
            scored.inc(len(values))
            if threshold is not None:
                above.inc(sum(value > threshold for value in values))

        return on_scored

    def observe_graph(self, model: str, graph: str, engine: OnnxEngine, batcher: MicroBatcher) -> None:
        """Attach this registry's metrics to one graph's engine and batcher."""
        timing = self.inference.labels(model, graph)
        sizes = self.batch_size.labels(model, graph)
        depth = self.queue_depth.labels(model)

        def on_run(seconds: float, batch: int) -> None:
            timing.observe(seconds)
            sizes.observe(batch)

        def on_depth(delta: int) -> None:
            depth.inc(delta)

        def on_abandoned(reason: str, phase: str) -> None:
            self.abandoned.labels(model, graph, reason, phase).inc()

        engine.on_run = on_run
        batcher.on_depth = on_depth
        batcher.on_abandoned = on_abandoned

    @staticmethod
    def multiprocess() -> bool:
        """Whether this process is one of several workers sharing a metrics folder."""
        return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))

    def exposition(self) -> bytes:
        """The Prometheus text of this app, or of every worker in multi-process mode."""
        if not self.multiprocess():
            return generate_latest(self.registry)
        forget_dead_workers(os.environ["PROMETHEUS_MULTIPROC_DIR"])
        combined = CollectorRegistry()
        multiprocess.MultiProcessCollector(combined)
        return generate_latest(combined)

    def close(self) -> None:
        """At worker exit: its live gauges stop counting."""
        if self.multiprocess():
            multiprocess.mark_process_dead(os.getpid())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: nothing is sent, only whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    return True


def forget_dead_workers(folder: str) -> list[int]:
    """Remove the live gauges (queue depth, loaded models) of worker processes that no longer exist.

    A worker stopped normally removes its own (`ServiceMetrics.close`); a killed one (OOM killer,
    SIGKILL) cannot, and its last queue depth was summed into every scrape forever. Its counters and
    histograms stay: what it did still happened. Run before each multi-process scrape; the cost is one
    directory listing and one kill(pid, 0) per worker.
    """
    gone = set()
    for path in Path(folder).glob("gauge_live*_*.db"):
        name = path.stem.rsplit("_", 1)[-1]
        if name.isdigit() and not _alive(int(name)):
            gone.add(int(name))
    for pid in sorted(gone):
        with contextlib.suppress(FileNotFoundError):  # another worker's scrape removed it first
            multiprocess.mark_process_dead(pid, folder)
    return sorted(gone)
