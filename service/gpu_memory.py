"""A bound on the CUDA memory of each worker (AE_GPU_MEMORY_LIMIT_MB): one arena its sessions share.

ONNX Runtime gives every session its own CUDA arena, which keeps its peak for the session's life: a
worker serving 17 graphs holds 17 arenas, and the CUDA provider's own `gpu_mem_limit` bounds each of
them, not the worker. So with a limit, a worker registers one arena allocator for its CUDA device in
ONNX Runtime's environment, capped at the limit (the arena's `max_mem`), and each session it creates
takes its device memory from it (`session.use_env_allocators`). Workers x limit is then what the
service may take on the card, beside each worker's CUDA context (a few hundred MB).

Where that registration fails (an ONNX Runtime build without it), each session gets the limit as its
own `gpu_mem_limit` instead, with a warning: every session bounded, the worker not. A run that needs
more than the arena has left fails; the engine answers that as 503 `overloaded` (retry later, or send
less), never as a crash. Without CUDA in use the setting does nothing, and the start-up summary says so.
"""

from __future__ import annotations

import logging
import threading

import onnxruntime as ort

logger = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
_KIND_SAME_AS_REQUESTED = 1  # arena_extend_strategy: grow by what a run asks for, not powers of two

# How this process bounds CUDA memory, decided once (the environment's allocator is per process):
# "shared arena", "per session" (the fallback) or None (not decided yet).
_mode: str | None = None
_deciding = threading.Lock()  # versions load in worker threads (model control, lazy loads) at once


def runs_on_cuda(providers: list[str]) -> bool:
    """Whether sessions given `providers` (in preference order, as granted) run on CUDA.

    Only as the first provider: ONNX Runtime places each node on the first provider that takes it,
    so CUDA listed after the CPU runs nothing.
    """
    return bool(providers) and providers[0] == CUDA


def cuda_memory_options(limit_mb: int, device_id: int = 0) -> tuple[dict[str, str], dict[str, str]]:
    """(session config entries, CUDA provider options) that bound this worker's CUDA memory to `limit_mb`.

    Called for each session that asks for CUDA; registers the shared arena on the first call.
    """
    global _mode
    limit = str(limit_mb * 1024 * 1024)
    with _deciding:
        if _mode is None:
            _mode = _register_shared_arena(limit_mb, device_id)
    if _mode == "shared arena":
        return {"session.use_env_allocators": "1"}, {}
    return {}, {"gpu_mem_limit": limit, "arena_extend_strategy": "kSameAsRequested"}


def _register_shared_arena(limit_mb: int, device_id: int) -> str:
    """Register this process's one CUDA arena, capped at the limit; how sessions are bounded ("shared arena" or not)."""
    try:
        memory = ort.OrtMemoryInfo("Cuda", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, device_id, ort.OrtMemType.DEFAULT)
        arena = ort.OrtArenaCfg({"max_mem": limit_mb * 1024 * 1024, "arena_extend_strategy": _KIND_SAME_AS_REQUESTED})
        ort.create_and_register_allocator_v2(CUDA, memory, {"device_id": str(device_id)}, arena)
    except (RuntimeError, ValueError, TypeError, AttributeError) as error:
        logger.warning(
            "AE_GPU_MEMORY_LIMIT_MB=%d: ONNX Runtime could not share one CUDA arena among this worker's sessions "
            "(%s); each session is bounded to it instead",
            limit_mb,
            error,
        )
        return "per session"
    return "shared arena"


def gpu_memory_summary(limit_mb: int, providers_in_use: list[str]) -> str:
    """What the limit does in this worker, for the start-up summary."""
    if limit_mb == 0:
        return "no limit" if CUDA in providers_in_use else "not applicable (no CUDA)"
    if CUDA not in providers_in_use:
        return f"{limit_mb} MB, not applied (no CUDA)"
    return f"{limit_mb} MB per worker ({_mode or 'shared arena'})"
