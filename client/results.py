"""Typed answers: numpy arrays for latents and embeddings, PIL images (and their bytes) for images."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class VersionInfo:
    """One loaded version of a model, as `GET /v1/models` describes it (`raw` holds every field)."""

    version: int
    task: str
    family: str
    input_kind: str
    operations: tuple[str, ...]
    raw: dict[str, Any] = field(repr=False)


@dataclass(frozen=True)
class ModelInfo:
    """A served model: its versions and the one the unversioned routes use."""

    name: str
    default_version: int
    versions: tuple[VersionInfo, ...]

    @property
    def default(self) -> VersionInfo:
        """The version the routes without `/versions/{v}` use."""
        return self.version(self.default_version)

    def version(self, number: int) -> VersionInfo:
        """A loaded version by number; KeyError when it is not loaded."""
        for info in self.versions:
            if info.version == number:
                return info
        raise KeyError(f"{self.name} has no loaded version {number}")


@dataclass(frozen=True)
class Latent:
    """An image's latent (without the batch axis) and the size to crop its decoding back to."""

    array: np.ndarray
    image_size: tuple[int, int] | None


@dataclass(frozen=True)
class ImageResult:
    """An image answer: the bytes as sent (PNG unless asked otherwise) and what codecs report with them."""

    data: bytes
    psnr: float | None = None
    bits_per_pixel: float | None = None

    @cached_property
    def image(self) -> Image.Image:
        """The answer as a PIL image (decoded on first use)."""
        image = Image.open(io.BytesIO(self.data))
        image.load()
        return image


@dataclass(frozen=True)
class Compressed:
    """A compressed stream and its rate; `model` and `version` are read from the stream's own header.

    `quality` is the quality in [0, 1] a variable-rate codec coded at (the one asked for, or the one
    its rate control found for a size target); None from a fixed-rate codec.
    """

    stream: bytes
    bits_per_pixel: float
    model: str
    version: int
    height: int
    width: int
    quality: float | None = None


@dataclass(frozen=True)
class SeriesReconstruction:
    """Per series: the reconstruction (in the caller's units) and its error.

    `errors` are mean squared errors in normalised units (scores that do not depend on a series'
    scale). `percentiles` (0-100 among the model's calibration errors) come only from a model with a
    calibrated threshold; `anomaly` flags from such a model or when a threshold was sent.
    """

    reconstructions: list[np.ndarray]
    errors: np.ndarray
    percentiles: np.ndarray | None
    anomaly: np.ndarray | None
    model: str
    version: str

    def __len__(self) -> int:
        return len(self.errors)
