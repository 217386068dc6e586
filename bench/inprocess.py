"""In-process throughput, single-threaded: ONNX Runtime alone, and the whole decode + infer + encode.

These are the ceilings the HTTP numbers are compared with: on two cores the service cannot beat
twice the single-threaded pipeline rate.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from service.config import Settings
from service.kinds.image import image_reconstruct, prepare_image
from service.kinds.sequence import prepare_sequences, sequence_encode
from service.model import LoadedModel
from service.repository import latest_version_folder, load_version

SETTINGS = Settings(providers=["CPUExecutionProvider"], intra_op_threads=1, inter_op_threads=1)


def rate(work: Callable[[], Any], seconds: float = 2.0) -> float:
    """Calls of `work` per second over `seconds`, after one warm-up call (at least one timed call)."""
    work()  # warm
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        work()
        count += 1
    return count / (time.perf_counter() - started)


def _latest(models: Path, name: str) -> LoadedModel:
    return load_version(latest_version_folder(models / name), SETTINGS)


def measure_limits(models: Path, workloads: list[Any]) -> dict[str, dict[str, float]]:
    """Per workload: ONNX-only and full-pipeline requests per second on one thread."""
    limits = {}
    for workload in workloads:
        name = workload.service_path.split("/")[3]
        model = _latest(models, name)
        if workload.content_type.startswith("image/"):
            operation = "reconstruct"
            feeds = prepare_image(model, workload.body, SETTINGS).feeds

            def pipeline(model: LoadedModel = model, body: bytes = workload.body) -> bytes:
                return image_reconstruct(model, body, "image/png", SETTINGS)
        else:
            operation = "encode"
            raw = json.loads(workload.body)["sequences"]
            feeds = prepare_sequences(model, raw, SETTINGS).feeds

            def pipeline(model: LoadedModel = model, body: bytes = workload.body) -> bytes:
                return json.dumps(sequence_encode(model, json.loads(body)["sequences"], SETTINGS)).encode()

        engine = model.engine_for(operation)

        def onnx_only(engine: Any = engine, feeds: Any = feeds) -> Any:
            return engine.run(feeds)

        limits[workload.name] = {
            "onnx_only_per_s": rate(onnx_only),
            "pipeline_per_s": rate(pipeline),
        }
    return limits


def measure_denoiser(models: Path, png: bytes) -> dict[str, str | float]:
    """The default denoiser's cost per image on one thread: ONNX Runtime alone and the whole request."""
    model = _latest(models, "image-denoise")
    feeds = prepare_image(model, png, SETTINGS).feeds
    engine = model.engine_for("reconstruct")
    return {
        "model": f"image-denoise/{model.manifest.version}",
        "onnx_ms": 1000.0 / rate(lambda: engine.run(feeds), seconds=5.0),
        "pipeline_ms": 1000.0 / rate(lambda: image_reconstruct(model, png, "image/png", SETTINGS), seconds=5.0),
    }
