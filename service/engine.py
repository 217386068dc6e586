"""ONNX Runtime sessions: provider choice, threading, and a typed `run`.

ONNX Runtime falls back to CPU silently when a provider cannot be created, so the providers a
session really uses are read back from it and reported, never assumed from the request.
"""

from __future__ import annotations

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
        if self.on_run is not None:
            self.on_run(time.perf_counter() - started, len(next(iter(feeds.values()))))
        return dict(zip(self.output_names, outputs, strict=True))
