"""AE_GPU_MEMORY_LIMIT_MB: how a worker bounds its CUDA memory, and an allocation failure answered as 503."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnxruntime.capi.onnxruntime_pybind11_state import EPFail, RuntimeException

import service.gpu_memory
from service.config import Settings
from service.engine import OnnxEngine
from service.errors import OverloadedError
from service.gpu_memory import cuda_memory_options, gpu_memory_summary


def test_the_summary_says_what_the_limit_does_here() -> None:
    assert gpu_memory_summary(0, ["CPUExecutionProvider"]) == "not applicable (no CUDA)"
    assert gpu_memory_summary(0, ["CUDAExecutionProvider", "CPUExecutionProvider"]) == "no limit"
    assert gpu_memory_summary(4096, ["CPUExecutionProvider"]) == "4096 MB, not applied (no CUDA)"
    assert "4096 MB per worker" in gpu_memory_summary(4096, ["CUDAExecutionProvider"])


def test_without_a_shared_arena_each_cuda_session_gets_the_limit(monkeypatch, caplog) -> None:
    def unavailable(*args: object) -> None:
        raise RuntimeError("CUDA Provider not available")

    monkeypatch.setattr(service.gpu_memory, "_mode", None)
    monkeypatch.setattr(service.gpu_memory.ort, "create_and_register_allocator_v2", unavailable)
    entries, options = cuda_memory_options(512)
    assert entries == {} and options["gpu_mem_limit"] == str(512 * 1024 * 1024)
    assert "AE_GPU_MEMORY_LIMIT_MB=512" in caplog.text


def test_with_a_shared_arena_sessions_use_the_environments_allocator(monkeypatch) -> None:
    registered: list[tuple[object, ...]] = []
    monkeypatch.setattr(service.gpu_memory, "_mode", None)
    monkeypatch.setattr(service.gpu_memory.ort, "create_and_register_allocator_v2", lambda *a: registered.append(a))
    assert cuda_memory_options(1024) == ({"session.use_env_allocators": "1"}, {})
    assert cuda_memory_options(1024) == ({"session.use_env_allocators": "1"}, {})
    assert len(registered) == 1  # once per process, whatever the number of sessions
    assert registered[0][0] == "CUDAExecutionProvider"


@pytest.fixture
def engine(tiny_models: Path) -> OnnxEngine:
    graph = tiny_models / "tiny-image" / "1" / "encoder.onnx"
    return OnnxEngine(graph, Settings(providers=["CPUExecutionProvider"]), threads=1)


def test_an_allocation_failure_in_a_run_is_503_overloaded(engine: OnnxEngine, monkeypatch) -> None:
    def out_of_memory(*args: object) -> None:
        raise RuntimeException(
            "[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Failed to allocate memory for requested buffer"
        )

    monkeypatch.setattr(engine.session, "run_with_iobinding", out_of_memory)
    with pytest.raises(OverloadedError, match="short of accelerator memory"):
        engine.run({"image": np.zeros((1, 3, 8, 8), np.float32)})


def test_a_cuda_provider_failure_to_allocate_is_503_too(engine: OnnxEngine, monkeypatch) -> None:
    # The CUDA provider reports some allocation failures as EP_FAIL, a class of its own.
    def out_of_memory(*args: object) -> None:
        raise EPFail("[ONNXRuntimeError] : 11 : EP_FAIL : CUDA failure 2: out of memory")

    monkeypatch.setattr(engine.session, "run_with_iobinding", out_of_memory)
    with pytest.raises(OverloadedError, match="short of accelerator memory"):
        engine.run({"image": np.zeros((1, 3, 8, 8), np.float32)})


def test_other_run_failures_are_not_disguised(engine: OnnxEngine, monkeypatch) -> None:
    def broken(*args: object) -> None:
        raise RuntimeException("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Non-zero status code")

    monkeypatch.setattr(engine.session, "run_with_iobinding", broken)
    with pytest.raises(RuntimeException):
        engine.run({"image": np.zeros((1, 3, 8, 8), np.float32)})
