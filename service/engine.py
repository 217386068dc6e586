"""ONNX Runtime sessions: provider choice, threading, and a typed `run`.

ONNX Runtime falls back to CPU silently when a provider cannot be created, so the providers a
session really uses are read back from it and reported, never assumed from the request.
"""

from __future__ import annotations

import ctypes
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort

from service.config import Settings

logger = logging.getLogger(__name__)

_OPTIMIZATION = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


# After a run whose inputs and outputs hold this many bytes (a ~600 x 600 RGB float image) the process
# calls malloc_trim: glibc keeps a large run's freed activations otherwise (image-denoise v3 at
# 1536 x 1536 left 337 MB above warm without it, 67 MB with it). The trim took 2 ms after a 512 x 512
# image-conv run (111 ms) and 0.4 ms after a 256 x 256 one, so small runs skip it.
TRIM_AFTER_BYTES = 4 * 1024 * 1024


def _malloc_trim() -> Callable[[], object]:
    """The C library's `malloc_trim(0)` (freed heap pages back to the OS); a no-op off glibc."""
    try:
        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return lambda: None
    return lambda: trim(0)


_release_freed_memory = _malloc_trim()


# Providers that were asked for and silently not granted (e.g. CUDA without its libraries). Remembered
# so that later sessions do not retry them and repeat ONNX Runtime's failure log for every graph.
_NOT_GRANTED: set[str] = set()


def available_providers(preferred: list[str]) -> list[str]:
    """The preferred providers this ONNX Runtime build offers, in preference order (CPU always last)."""
    offered = set(ort.get_available_providers()) - _NOT_GRANTED
    chosen = [p for p in preferred if p in offered]
    return chosen or ["CPUExecutionProvider"]


class OnnxEngine:
    """One InferenceSession for one graph file."""

    def __init__(self, path: Path, settings: Settings, threads: int) -> None:
        """`threads`: intra-op threads, from `Settings.intra_op_threads_for` (0: ONNX Runtime's default)."""
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = settings.inter_op_threads
        options.graph_optimization_level = _OPTIMIZATION[settings.graph_optimization]
        # No CPU arena: it keeps each graph's peak for the life of the process, one arena per graph, so
        # one 1 x 262144 codec stream left ~4.8 GB held while idle. Measured (bench.memory, docs/
        # benchmarks.md "Memory"): without it RSS returns to its warm level after a large run (with the
        # trim below) and the peak is lower (image-conv at 2048 x 2048: 775 MB vs 1133 MB); 256 x 256
        # latency did not change beyond noise. The memory pattern stays on: turning it off cost ~50%.
        options.enable_cpu_mem_arena = False
        if not settings.thread_spinning:
            # Idle intra-op threads otherwise busy-wait for work, taking cores from other workers.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        requested = available_providers(settings.providers)
        self.session = ort.InferenceSession(str(path), options, providers=requested)
        self.providers: list[str] = list(self.session.get_providers())
        missing = [p for p in requested if p not in self.providers]
        if missing:
            _NOT_GRANTED.update(missing)
            logger.warning("requested %s but ONNX Runtime could not use them; running on %s", missing, self.providers)
        # Called with (seconds, batch size) after each run; the app attaches its metrics here.
        self.on_run: Callable[[float, int], None] | None = None
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the graph; outputs by name."""
        started = time.perf_counter()
        outputs = self.session.run(self.output_names, feeds)
        if sum(a.nbytes for a in feeds.values()) + sum(a.nbytes for a in outputs) >= TRIM_AFTER_BYTES:
            _release_freed_memory()
        if self.on_run is not None:
            self.on_run(time.perf_counter() - started, len(next(iter(feeds.values()))))
        return dict(zip(self.output_names, outputs, strict=True))
