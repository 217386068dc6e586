"""The operations as named stages: decode the request, run the graph, encode the answer.

Each function is synchronous and CPU-bound (Pillow, NumPy, ONNX Runtime all release the GIL for
their heavy parts); routes call them in the thread pool so the event loop never blocks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from service.codecs.image import check_fixed_size, decode_image, encode_image, pad_to_multiple
from service.codecs.sequence import denormalize, normalize, pad_batch, parse_sequences
from service.config import Settings
from service.errors import InvalidInputError, PayloadTooLargeError
from service.manifest import ImageInputSpec, SequenceInputSpec
from service.repository import LoadedModel


def image_spec(model: LoadedModel) -> ImageInputSpec:
    """The image input spec, or 422 when the model takes sequences."""
    spec = model.manifest.input
    if not isinstance(spec, ImageInputSpec):
        raise InvalidInputError(f"model {model.manifest.name!r} takes sequences (JSON), not images")
    return spec


def sequence_spec(model: LoadedModel) -> SequenceInputSpec:
    """The sequence input spec, or 422 when the model takes images."""
    spec = model.manifest.input
    if not isinstance(spec, SequenceInputSpec):
        raise InvalidInputError(f"model {model.manifest.name!r} takes images, not sequences")
    return spec


# ---------------------------------------------------------------- images


def _image_batch(model: LoadedModel, data: bytes, settings: Settings) -> tuple[np.ndarray, tuple[int, int]]:
    spec = image_spec(model)
    image = decode_image(data, spec.channels, settings.max_image_pixels)
    check_fixed_size(image, spec.fixed_size)
    size = (image.shape[1], image.shape[2])
    return pad_to_multiple(image[None], spec.stride_multiple), size


def image_reconstruct(model: LoadedModel, data: bytes, mime: str, settings: Settings) -> bytes:
    """Encoded image in, encoded reconstruction of the same size out."""
    batch, (height, width) = _image_batch(model, data, settings)
    out = model.engine_for("reconstruct").run({"image": batch})["reconstruction"]
    return encode_image(out[0, :, :height, :width], mime, settings.png_compress_level)


def image_encode(model: LoadedModel, data: bytes, settings: Settings) -> tuple[np.ndarray, tuple[int, int]]:
    """Encoded image in, (latent without batch axis, original height and width) out."""
    batch, size = _image_batch(model, data, settings)
    return model.engine_for("encode").run({"image": batch})["latent"][0], size


def _check_latent(model: LoadedModel, latent: np.ndarray, settings: Settings) -> np.ndarray:
    expected = model.manifest.latent
    if latent.ndim == len(expected.shape) + 1 and latent.shape[0] == 1:
        latent = latent[0]  # a batch of one is accepted too
    fixed = [d for d in expected.shape if isinstance(d, int)]
    if latent.ndim != len(expected.shape) or list(latent.shape[: len(fixed)]) != fixed:
        raise InvalidInputError(f"latent shape {list(latent.shape)} does not match {expected.shape}")
    if not np.isfinite(latent).all():
        raise InvalidInputError("latent holds NaN or Inf")
    if expected.kind == "spatial":
        f = expected.downsample or 1
        if latent.shape[1] * f * latent.shape[2] * f > settings.max_image_pixels:
            raise PayloadTooLargeError("the decoded image would exceed the pixel limit")
    return latent


def image_decode(
    model: LoadedModel, latent: np.ndarray, size: tuple[int, int] | None, mime: str, settings: Settings
) -> bytes:
    """Latent in, encoded image out, cropped to `size` when given."""
    latent = _check_latent(model, latent, settings)
    out = model.engine_for("decode").run({"latent": latent[None]})["reconstruction"][0]
    if size is not None:
        height, width = size
        full_h, full_w = out.shape[-2:]
        f = image_spec(model).stride_multiple
        if not (0 < height <= full_h and 0 < width <= full_w and full_h - height < f and full_w - width < f):
            raise InvalidInputError(f"image size {height}x{width} does not fit a latent decoding to {full_h}x{full_w}")
        out = out[:, :height, :width]
    return encode_image(out, mime, settings.png_compress_level)


# ---------------------------------------------------------------- sequences


@dataclass
class SequenceBatch:
    """Normalised, padded series with what is needed to undo the normalisation."""

    padded: np.ndarray
    lengths: np.ndarray
    means: list[np.ndarray]
    stds: list[np.ndarray]


def _sequence_batch(model: LoadedModel, raw: Any, settings: Settings) -> SequenceBatch:
    spec = sequence_spec(model)
    series = parse_sequences(raw, spec, settings.max_batch_sequences, settings.max_sequence_length)
    scaled = [normalize(s, spec.normalization) for s in series]
    padded, lengths = pad_batch([s for s, _, _ in scaled])
    return SequenceBatch(padded, lengths, [m for _, m, _ in scaled], [d for _, _, d in scaled])


def _as_json_series(series: np.ndarray) -> list[Any]:
    # Univariate series go back as flat lists, mirroring how they were sent.
    return series[:, 0].tolist() if series.shape[1] == 1 else series.tolist()


def sequence_encode(model: LoadedModel, raw: Any, settings: Settings) -> list[list[float]]:
    """Embeddings of a batch of series."""
    batch = _sequence_batch(model, raw, settings)
    latent = model.engine_for("encode").run({"sequences": batch.padded, "lengths": batch.lengths})["latent"]
    return latent.tolist()


def sequence_reconstruct(model: LoadedModel, raw: Any, settings: Settings) -> tuple[list[Any], list[float]]:
    """(reconstructions in the caller's units, per-series MSE in normalised units)."""
    batch = _sequence_batch(model, raw, settings)
    out = model.engine_for("reconstruct").run({"sequences": batch.padded, "lengths": batch.lengths})
    recons, errors = [], []
    for i, length in enumerate(batch.lengths.tolist()):
        scaled = out["reconstruction"][i, :length]
        errors.append(float(np.mean((scaled - batch.padded[i, :length]) ** 2)))
        recons.append(_as_json_series(denormalize(scaled, batch.means[i], batch.stds[i])))
    return recons, errors


def sequence_decode(model: LoadedModel, embeddings: Any, lengths: Any, settings: Settings) -> list[Any]:
    """Series of the given lengths from embeddings (normalised units unless dataset statistics exist)."""
    spec = sequence_spec(model)
    size = model.manifest.latent.shape[0]
    try:
        latent = np.asarray(embeddings, dtype=np.float32)
        steps = np.asarray(lengths, dtype=np.int64)
    except (ValueError, TypeError) as error:
        raise InvalidInputError("embeddings must be a list of equal-length number lists") from error
    if latent.ndim != 2 or latent.shape[1] != size or latent.shape[0] == 0:
        raise InvalidInputError(f"embeddings must have shape [batch, {size}]; got {list(latent.shape)}")
    if latent.shape[0] > settings.max_batch_sequences:
        raise InvalidInputError(f"batch of {latent.shape[0]} exceeds the limit of {settings.max_batch_sequences}")
    if steps.shape != (latent.shape[0],):
        raise InvalidInputError("lengths must hold one integer per embedding")
    if not np.isfinite(latent).all():
        raise InvalidInputError("embeddings hold NaN or Inf")
    longest = min(spec.max_length, settings.max_sequence_length)
    if steps.min() < spec.min_length or steps.max() > longest:
        raise InvalidInputError(f"lengths must be between {spec.min_length} and {longest}")
    out = model.engine_for("decode").run({"latent": latent, "lengths": steps})["reconstruction"]
    norm = spec.normalization
    mean = np.asarray(norm.mean if norm.kind == "dataset" else [0.0] * spec.features, np.float32)
    std = np.asarray(norm.std if norm.kind == "dataset" else [1.0] * spec.features, np.float32)
    return [_as_json_series(denormalize(out[i, :n], mean, std)) for i, n in enumerate(steps.tolist())]
