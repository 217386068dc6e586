"""The plain baseline the service is measured against: one `def` endpoint per workload, no batching.

    AE_BASELINE_MODELS=models uvicorn bench.baseline_app:app --port 8100

What a straightforward FastAPI deployment does: decode the PNG with Pillow, run one ONNX Runtime
session (default options), encode a PNG with Pillow's defaults, in FastAPI's thread pool.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Annotated

import numpy as np
import onnxruntime as ort
from fastapi import Body, FastAPI, Response
from PIL import Image
from pydantic import BaseModel

MODELS = Path(os.environ.get("AE_BASELINE_MODELS", "models"))
IMAGE_MODEL = os.environ.get("AE_BASELINE_IMAGE_MODEL", "image-conv/2")
SEQUENCE_MODEL = os.environ.get("AE_BASELINE_SEQUENCE_MODEL", "ecg-embed/2")
CPU = ["CPUExecutionProvider"]

image_session = ort.InferenceSession(str(MODELS / IMAGE_MODEL / "autoencoder.onnx"), providers=CPU)
sequence_session = ort.InferenceSession(str(MODELS / SEQUENCE_MODEL / "encoder.onnx"), providers=CPU)
STRIDE = json.loads((MODELS / IMAGE_MODEL / "model.json").read_text())["input"]["stride_multiple"]

app = FastAPI()


@app.post("/reconstruct")
def reconstruct(data: Annotated[bytes, Body(media_type="image/png")]) -> Response:
    """PNG in, PNG of the same size out."""
    pixels = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.float32) / 255.0
    height, width = pixels.shape[:2]
    batch = pixels.transpose(2, 0, 1)[None]
    batch = np.pad(batch, ((0, 0), (0, 0), (0, -height % STRIDE), (0, -width % STRIDE)), mode="edge")
    out = image_session.run(["reconstruction"], {"image": batch})[0][0, :, :height, :width]
    image = Image.fromarray((np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8).transpose(1, 2, 0))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return Response(buffer.getvalue(), media_type="image/png")


class SequencesIn(BaseModel):
    """Univariate series."""

    sequences: list[list[float]]


@app.post("/encode")
def encode(payload: SequencesIn) -> Response:
    """{"sequences": [...]} in, {"embeddings": [...]} out."""
    series = [np.asarray(s, dtype=np.float32) for s in payload.sequences]
    scaled = [(s - s.mean()) / max(float(s.std()), 1e-8) for s in series]
    lengths = np.array([len(s) for s in scaled], dtype=np.int64)
    batch = np.zeros((len(scaled), int(lengths.max()), 1), np.float32)
    for row, s in zip(batch, scaled, strict=True):
        row[: len(s), 0] = s
    latent = sequence_session.run(["latent"], {"sequences": batch, "lengths": lengths})[0]
    return Response(json.dumps({"embeddings": latent.tolist()}), media_type="application/json")
