"""ONNX Runtime sessions: provider choice, threading, and a typed `run`.

ONNX Runtime falls back to CPU silently when a provider cannot be created, so the providers a
session really uses are read back from it and reported, never assumed from the request.

Every run goes through I/O binding: inputs are bound from host memory (ONNX Runtime copies each to
the device once) and outputs are allocated on the device the graph runs on. On CUDA they are copied
to the host once, together, after the run (`session.run`'s own path copies each output separately);
on the CPU provider the answer is views of ONNX Runtime's output buffers, as `session.run` gives,
so nothing is copied twice. The CPU took the same time either way (image-conv 64x64: 0.76 ms; 256x256:
13.3 vs 12.8 ms; image-denoise v4 64x64: 4.2 vs 4.1 ms; ecg-embed one series: 0.54 vs 0.56 ms; one
thread, 2-core dev VM), so one code path serves both and is tested without a GPU.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import logging
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import onnxruntime as ort
from onnxruntime.capi.onnxruntime_pybind11_state import EPFail, Fail, RuntimeException

from service.config import Settings
from service.errors import OverloadedError
from service.gpu_memory import CUDA, cuda_memory_options, runs_on_cuda

logger = logging.getLogger(__name__)
T = TypeVar("T")

# How ONNX Runtime words an allocation that failed (the CUDA arena at max_mem, cudaMalloc, a CPU bad_alloc).
_OUT_OF_MEMORY = re.compile(r"Failed to allocate memory|out of memory|bad_alloc|BFCArena", re.IGNORECASE)

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


# Public for the stages that free image-sized buffers after runs too small to trim (codec tiles).
release_freed_memory = _malloc_trim()


# Providers that were asked for and silently not granted (e.g. CUDA without its libraries). Remembered
# so that later sessions do not retry them and repeat ONNX Runtime's failure log for every graph.
_NOT_GRANTED: set[str] = set()

# The smallest graph (one Identity node, float[1] -> float[1], opset 13; serialized with onnx.helper)
# on which ONNX Runtime creates a session, and with it the providers asked for: the probe below tries
# a GPU provider on it before any model loads.
_PROBE_GRAPH = (
    b'\x08\x08\x12\x00:;\n\x10\n\x01x\x12\x01y"\x08Identity\x12\x05probeZ\x0f\n\x01x\x12\n\n\x08\x08\x01'
    b"\x12\x04\n\x02\x08\x01b\x0f\n\x01y\x12\n\n\x08\x08\x01\x12\x04\n\x02\x08\x01B\x04\n\x00\x10\r"
)
# What each probed provider's probe found in this process: None when usable, else why not.
_PROBED: dict[str, str | None] = {}
# ONNX Runtime's own log lines (C++, written straight to stderr), e.g. `[E:onnxruntime:Default, ...]`.
_ORT_LINE = re.compile(r"\[[EWIV]:onnxruntime:")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_MAX_REASON_CHARS = 300


def _captured(create: Callable[[], T]) -> tuple[T, str]:
    """Call `create` while the process's stderr (file descriptor 2) and Python's stdout are captured.

    ONNX Runtime writes its failure to create a provider from C++ to descriptor 2, in red, and its
    Python fallback prints to stdout: neither goes through `logging`. Returns what they wrote.
    """
    sys.stderr.flush()
    with tempfile.TemporaryFile() as sink, contextlib.redirect_stdout(io.StringIO()) as printed:
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            result = create()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        sink.seek(0)
        written = sink.read().decode("utf-8", "replace")
    return result, _ANSI.sub("", written + printed.getvalue())


def _failure_reason(output: str) -> str:
    """ONNX Runtime's first error line about a provider, shortened, without its source location."""
    for line in output.splitlines():
        if _ORT_LINE.search(line):
            text = line.split("] ", 1)[-1].strip()  # drop "time [E:onnxruntime:Default, file:line operator()]"
            text = text.split(" : FAIL : ", 1)[-1]  # and the failing C++ function's name before the message
            return text if len(text) <= _MAX_REASON_CHARS else text[:_MAX_REASON_CHARS] + "..."
    return "ONNX Runtime could not create it"


def _replay(output: str, keep_onnxruntime_lines: bool) -> None:
    """Write captured output back to stderr: lines of other threads always, ONNX Runtime's on request."""
    lines = [
        line for line in output.splitlines() if line.strip() and (keep_onnxruntime_lines or not _ORT_LINE.search(line))
    ]
    if lines:
        sys.stderr.write("\n".join(lines) + "\n")


def probe_provider(provider: str) -> str | None:
    """None when ONNX Runtime can create `provider` on this host, else why not; tried once per process.

    onnxruntime-gpu lists CUDA as available on any host; on one without the CUDA libraries or a GPU,
    creating a session with it logs a red error (and a warning) for every worker, then falls back to
    CPU. The probe creates it once on `_PROBE_GRAPH` with that output captured, so a CPU-only host
    starts without error lines and its sessions never ask for CUDA.
    """
    if provider not in _PROBED:
        try:
            session, output = _captured(
                lambda: ort.InferenceSession(_PROBE_GRAPH, providers=[provider, "CPUExecutionProvider"])
            )
            usable = provider in session.get_providers()
        except (RuntimeError, ValueError) as error:  # what ONNX Runtime raises when no fallback is left
            usable, output = False, f"[E:onnxruntime:] {error}"
        _PROBED[provider] = None if usable else _failure_reason(output)
        _replay(output, keep_onnxruntime_lines=usable)
    return _PROBED[provider]


def available_providers(preferred: list[str], insist: bool = False) -> list[str]:
    """The preferred providers usable here, in preference order; CPU when none is.

    Providers this ONNX Runtime build offers are probed (`probe_provider`) unless they are the CPU's.
    One that fails is left out with one log line per process: info when it was only the default
    preference, a warning when `insist` (the operator asked for it by name).
    """
    offered = set(ort.get_available_providers()) - _NOT_GRANTED
    chosen = []
    for provider in preferred:
        if provider not in offered:
            continue
        if provider == "CPUExecutionProvider" or provider in _PROBED:
            usable = _PROBED.get(provider) is None
        elif (reason := probe_provider(provider)) is not None:
            usable = False
            log = logger.warning if insist else logger.info
            log("%s is not usable on this host, so it is not used: %s", provider, reason)
        else:
            usable = True
        if usable:
            chosen.append(provider)
    return chosen or ["CPUExecutionProvider"]


def _shapes(feeds: dict[str, np.ndarray]) -> dict[str, list[int]]:
    return {name: list(array.shape) for name, array in feeds.items()}


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
        requested = available_providers(settings.providers, insist="providers" in settings.model_fields_set)
        providers: list[str | tuple[str, dict[str, str]]] = list(requested)
        if CUDA in requested and settings.gpu_memory_limit_mb:
            entries, cuda_options = cuda_memory_options(settings.gpu_memory_limit_mb)
            for key, value in entries.items():
                options.add_session_config_entry(key, value)
            providers = [(p, cuda_options) if p == CUDA else p for p in requested]
        self.session = ort.InferenceSession(str(path), options, providers=providers)
        self.providers: list[str] = list(self.session.get_providers())
        missing = [p for p in requested if p not in self.providers]
        if missing:
            _NOT_GRANTED.update(missing)
            logger.warning("requested %s but ONNX Runtime could not use them; running on %s", missing, self.providers)
        # Called with (seconds, batch size) after each run; the app attaches its metrics here.
        self.on_run: Callable[[float, int], None] | None = None
        # MODEL/VERSION/graph file, for the debug line of each run.
        self.label = f"{path.parent.parent.name}/{path.parent.name}/{path.name}"
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        # Where outputs are allocated: on the GPU when the session runs there (copied back once per run).
        self.output_device = "cuda" if runs_on_cuda(self.providers) else "cpu"

    def _run_bound(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        binding = self.session.io_binding()
        # Bound host arrays are read in place during the run: the contiguous copies must outlive it.
        inputs = {name: np.ascontiguousarray(array) for name, array in feeds.items()}
        for name, array in inputs.items():
            binding.bind_cpu_input(name, array)
        for name in self.output_names:
            binding.bind_output(name, self.output_device)
        self.session.run_with_iobinding(binding)
        if self.output_device == "cpu":
            # Views of ONNX Runtime's own output buffers (they live as long as the arrays): no copy,
            # exactly what `session.run` returns.
            return [value.numpy() for value in binding.get_outputs()]
        outputs: list[np.ndarray] = binding.copy_outputs_to_cpu()  # one device-to-host copy per output
        return outputs

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the graph; outputs by name."""
        started = time.perf_counter()
        try:
            outputs = self._run_bound(feeds)
        except (RuntimeException, Fail, EPFail) as error:
            if not _OUT_OF_MEMORY.search(str(error)):
                raise
            # A device arena at its limit (AE_GPU_MEMORY_LIMIT_MB): this request is too large for what is
            # free now, which other requests may free; the service is fine.
            logger.warning("graph run out of memory: %s", str(error).splitlines()[0][:300])
            raise OverloadedError(
                "the server is short of accelerator memory for this request; retry later or send a smaller one"
            ) from error
        if sum(a.nbytes for a in feeds.values()) + sum(a.nbytes for a in outputs) >= TRIM_AFTER_BYTES:
            release_freed_memory()
        seconds = time.perf_counter() - started
        batch = len(next(iter(feeds.values())))
        if self.on_run is not None:
            self.on_run(seconds, batch)
        # AE_LOG_LEVEL=debug: one line per graph run (inside a request, with its request id), so the
        # batch sizes the micro-batcher formed and each run's time can be read per request.
        if logger.isEnabledFor(logging.DEBUG):
            timing = {"graph": self.label, "batch": batch, "run_ms": round(seconds * 1000, 3)}
            logger.debug("graph run", extra={**timing, "feeds": _shapes(feeds)})
        return dict(zip(self.output_names, outputs, strict=True))
