"""A running app (lifespan included) over the tiny exported models."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from service.config import Settings
from service.main import create_app

# Every version of the tiny repository loads unless a test names another policy (`version_policy=None`:
# the repository's own policy.toml, else the built-in one).
ALL_VERSIONS = Path(__file__).with_name("all-versions.toml")


def service_settings(repository: Path, **overrides: object) -> Settings:
    overrides = {"version_policy": ALL_VERSIONS, **overrides}
    return Settings(repository=repository, providers=["CPUExecutionProvider"], intra_op_threads=1, **overrides)


@pytest.fixture(scope="module")
def client(tiny_models: Path) -> Iterator[TestClient]:
    app = create_app(
        service_settings(tiny_models, max_image_pixels=600 * 600, max_body_bytes=4_000_000, max_batch_sequences=32)
    )
    with TestClient(app) as test_client:
        yield test_client


def png_bytes(height: int, width: int, mode: str = "RGB", seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "L": 1, "RGBA": 4}[mode]
    pixels = rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
    image = Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))
