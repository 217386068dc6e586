"""One real `ae-serve` on the tiny models for the client tests, and sample inputs."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.service.conftest import ALL_VERSIONS
from tests.service.server import running_server


@pytest.fixture(scope="session")
def server_url(tiny_models: Path) -> Iterator[str]:
    """Base URL of a real server with every tiny model version loaded (tiny-seq v1 embeds, v2 reconstructs)."""
    with running_server(tiny_models, AE_VERSION_POLICY=str(ALL_VERSIONS)) as (_, base):
        yield base


def png(height: int = 40, width: int = 48, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    out = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(out, format="PNG")
    return out.getvalue()


def smooth_png(height: int, width: int, seed: int = 0) -> bytes:
    """A photo-like gradient: unlike noise, its stream size depends on a variable-rate codec's quality."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    channels = [np.sin(6 * x * rng.uniform(0.5, 2) + rng.uniform(0, 6)) * np.cos(5 * y) for _ in range(3)]
    pixels = (np.stack(channels, -1) * 100 + 128).clip(0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def series(count: int, length: int = 60, seed: int = 0) -> list[list[float]]:
    rng = np.random.default_rng(seed)
    steps = np.linspace(0, 6, length)
    return [(np.sin(steps + phase) + 0.05 * rng.standard_normal(length)).tolist() for phase in rng.uniform(0, 3, count)]
