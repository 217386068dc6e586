"""The device-aware engine: I/O binding on every run, fp16 variants per AE_PRECISION, batching per device."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from fastapi.testclient import TestClient

import service.device_defaults
import service.repository
from service.config import Settings
from service.device_defaults import GPU_BATCHING, batching_for
from service.engine import OnnxEngine
from service.gpu_memory import CUDA
from service.main import create_app
from service.manifest import load_manifest
from service.repository import runs_fp16
from tests.service.conftest import decode_png, png_bytes, service_settings
from training.export_fp16 import export_fp16_of

CPU = "CPUExecutionProvider"


@pytest.fixture(scope="module")
def fp16_models(tiny_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny-image 1 (fp32 only) and 2 (the same graphs plus their fp16 variant), tiny-seq 1."""
    repo = tmp_path_factory.mktemp("fp16-models")
    shutil.copytree(tiny_models / "tiny-image", repo / "tiny-image")
    (repo / "tiny-seq").mkdir()
    shutil.copytree(tiny_models / "tiny-seq" / "1", repo / "tiny-seq" / "1")
    export_fp16_of(repo / "tiny-image" / "1", repo)
    return repo


def _client(repository: Path, precision: str) -> TestClient:
    return TestClient(create_app(service_settings(repository, precision=precision)))


@pytest.fixture(scope="module")
def fp16_client(fp16_models: Path) -> Iterator[TestClient]:
    with _client(fp16_models, "fp16") as client:
        yield client


def _precisions(client: TestClient) -> dict[tuple[str, int], str]:
    models = client.get("/v1/models").json()["models"]
    return {(m["name"], v["version"]): v["precision"] for m in models for v in m["versions"]}


def test_fp16_runs_the_variant_where_a_version_has_one(fp16_client: TestClient) -> None:
    assert _precisions(fp16_client) == {("tiny-image", 1): "fp32", ("tiny-image", 2): "fp16", ("tiny-seq", 1): "fp32"}
    model = fp16_client.app.state.service.repository.get("tiny-image", 2)  # type: ignore[attr-defined]
    assert {role: e.label.rsplit("/", 1)[1] for role, e in model.engines.items()} == {
        "encoder": "fp16_encoder.onnx",
        "decoder": "fp16_decoder.onnx",
        "autoencoder": "fp16_autoencoder.onnx",
    }


def test_fp16_answers_agree_with_fp32_within_the_recorded_bound(fp16_client: TestClient, fp16_models: Path) -> None:
    body = png_bytes(40, 56, seed=3)
    answers = []
    for version in (1, 2):
        response = fp16_client.post(
            f"/v1/models/tiny-image/versions/{version}/reconstruct", content=body, headers={"content-type": "image/png"}
        )
        assert response.status_code == 200, response.text
        answers.append(decode_png(response.content).astype(int))
    bound = load_manifest(fp16_models / "tiny-image" / "2").fp16.parity_max_abs_diff["autoencoder"]  # type: ignore[union-attr]
    # 8-bit answers: the fp16 difference, plus one level of rounding either side.
    assert answers[0].shape == answers[1].shape
    assert np.abs(answers[0] - answers[1]).max() <= 255 * bound + 1


def test_auto_and_fp32_run_fp32_on_a_cpu(fp16_models: Path) -> None:
    for precision in ("auto", "fp32"):
        with _client(fp16_models, precision) as client:
            assert set(_precisions(client).values()) == {"fp32"}


def test_auto_picks_fp16_only_where_sessions_run_on_cuda(fp16_models: Path, monkeypatch) -> None:
    with_variant, without = (
        load_manifest(fp16_models / "tiny-image" / "2"),
        load_manifest(fp16_models / "tiny-image" / "1"),
    )
    monkeypatch.setattr(service.repository, "available_providers", lambda preferred: [CUDA, CPU])
    assert runs_fp16(with_variant, Settings(precision="auto")) and not runs_fp16(without, Settings(precision="auto"))
    assert not runs_fp16(with_variant, Settings(precision="fp32"))
    monkeypatch.setattr(service.repository, "available_providers", lambda preferred: [CPU, CUDA])
    assert not runs_fp16(with_variant, Settings(precision="auto"))  # CUDA second: the CPU runs the graphs
    monkeypatch.setattr(service.repository, "available_providers", lambda preferred: [CPU])
    assert not runs_fp16(with_variant, Settings(precision="auto")) and runs_fp16(
        with_variant, Settings(precision="fp16")
    )


def test_a_gpu_gets_bigger_batches_unless_they_were_set() -> None:
    cpu = Settings()
    assert batching_for(cpu, [CPU]) is cpu and batching_for(cpu, [CPU, CUDA]) is cpu
    gpu = batching_for(Settings(), [CUDA, CPU])
    assert {name: getattr(gpu, name) for name in GPU_BATCHING} == GPU_BATCHING
    assert (cpu.max_batch_size, cpu.max_batch_pixels, cpu.max_wait_ms) != tuple(GPU_BATCHING.values())
    chosen = batching_for(Settings(max_batch_size=8, max_wait_ms=0.5), [CUDA, CPU])
    assert (chosen.max_batch_size, chosen.max_wait_ms, chosen.max_batch_pixels) == (
        8,
        0.5,
        GPU_BATCHING["max_batch_pixels"],
    )


def _started_settings(repository: Path, **overrides: object) -> tuple[Settings, int]:
    """The settings a started app runs with, and the rows tiny-image's batcher admits."""
    with TestClient(create_app(service_settings(repository, **overrides))) as client:
        state = client.app.state.service  # type: ignore[attr-defined]
        batcher = state.repository.get("tiny-image").handler.batchers["autoencoder"]
        return state.settings, batcher.policy.max_batch_size


def test_the_app_applies_the_devices_batching(fp16_models: Path, monkeypatch) -> None:
    cpu, rows = _started_settings(fp16_models)
    assert (cpu.max_batch_size, cpu.max_batch_pixels, cpu.max_wait_ms, rows) == (16, 65536, 2.0, 16)
    monkeypatch.setattr(service.device_defaults, "available_providers", lambda preferred, insist: [CUDA, CPU])
    gpu, rows = _started_settings(fp16_models, max_wait_ms=1.0)
    assert (gpu.max_batch_size, gpu.max_batch_pixels, gpu.max_wait_ms) == (64, 1024 * 1024, 1.0)
    assert rows == 64  # the batchers are built from the device's settings


def _graph(tiny_models: Path, name: str, role: str) -> Path:
    return tiny_models / name / "1" / f"{role}.onnx"


def test_every_run_goes_through_io_binding_and_matches_session_run(tiny_models: Path, monkeypatch) -> None:
    rng = np.random.default_rng(0)
    cases = [
        (_graph(tiny_models, "tiny-image", "autoencoder"), {"image": rng.random((2, 3, 16, 24), dtype=np.float32)}),
        (
            _graph(tiny_models, "tiny-seq", "encoder"),
            {"sequences": rng.standard_normal((2, 9, 1)).astype(np.float32), "lengths": np.array([9, 4], np.int64)},
        ),
    ]
    for path, feeds in cases:
        engine = OnnxEngine(path, Settings(providers=[CPU]), threads=1)
        assert engine.output_device == "cpu"
        plain = ort.InferenceSession(str(path), providers=[CPU]).run(None, feeds)

        def not_used(*args: object) -> None:
            raise AssertionError("session.run is not the engine's path")

        monkeypatch.setattr(engine.session, "run", not_used)
        bound = engine.run(feeds)
        assert list(bound) == engine.output_names
        for got, want in zip(bound.values(), plain, strict=True):
            np.testing.assert_array_equal(got, want)
    # A non-contiguous input (a transposed view) is bound by its values, not its memory layout.
    engine = OnnxEngine(cases[0][0], Settings(providers=[CPU]), threads=1)
    view = np.swapaxes(rng.random((1, 3, 24, 16), dtype=np.float32), 2, 3)
    assert not view.flags.c_contiguous
    want = engine.run({"image": np.ascontiguousarray(view)})["reconstruction"]
    np.testing.assert_array_equal(engine.run({"image": view})["reconstruction"], want)
