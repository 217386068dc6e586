"""The operations as named stages: prepare (per request), run (per batch), finish (per request).

`prepare_*` decodes and validates a request into graph feeds with a batching key; the feeds of
requests with equal keys can be concatenated along the batch axis. `finish_*` turns that request's
slice of the graph outputs into the answer. Stages are synchronous and CPU-bound (Pillow, NumPy and
ONNX Runtime release the GIL for their heavy parts); the service runs them in worker threads.
`run_direct` chains the three without batching (evaluation code and tests use it).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.codecs.image import check_fixed_size, decode_image, encode_image, pad_to_multiple
from service.codecs.sequence import denormalize, normalize, pad_batch, parse_sequences
from service.config import Settings
from service.errors import InvalidInputError
from service.limits import SizeLimits, check_run_size
from service.manifest import ImageInputSpec, SequenceInputSpec
from service.repository import LoadedModel

Feeds = dict[str, np.ndarray]
# Series are padded up to a multiple of this, so requests of similar lengths can share a batch.
LENGTH_BUCKET = 16


@dataclass
class Prepared:
    """One request's graph feeds, its batching key, and what `finish` needs to answer."""

    key: Hashable
    feeds: Feeds
    context: Any


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


def run_direct(model: LoadedModel, operation: str, prepared: Prepared, finish: Callable[..., Any], *args: Any) -> Any:
    """Prepare -> run -> finish for one request, without batching."""
    outputs = model.engine_for(operation).run(prepared.feeds)
    return finish(outputs, prepared.context, *args)


# ---------------------------------------------------------------- images


def prepare_image(model: LoadedModel, data: bytes, settings: Settings) -> Prepared:
    """Decode, check and pad an image; the key is the padded size."""
    spec = image_spec(model)
    image = decode_image(data, spec.channels, SizeLimits.from_settings(settings), spec.stride_multiple)
    check_fixed_size(image, spec.fixed_size)
    batch = pad_to_multiple(image[None], spec.stride_multiple)
    return Prepared(batch.shape[-2:], {"image": batch}, (image.shape[1], image.shape[2]))


def finish_image(outputs: Feeds, size: tuple[int, int], mime: str, settings: Settings) -> bytes:
    """Crop the reconstruction to the original size and encode it."""
    height, width = size
    return encode_image(outputs["reconstruction"][0, :, :height, :width], mime, settings.png_compress_level)


def finish_latent(outputs: Feeds, size: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int]]:
    """The latent without its batch axis, and the original size."""
    return outputs["latent"][0], size


def check_latent_shape(model: LoadedModel, shape: tuple[int, ...], settings: Settings) -> tuple[int, int]:
    """The (height, width) of the image a latent of `shape` decodes to, which the graph runs on.

    422 when the shape does not fit the model's latent spec, 413 when that image is over the limits.
    Parsing calls it on the declared shape, before the latent's data is decoded.
    """
    expected = model.manifest.latent
    if len(shape) == len(expected.shape) + 1 and shape[0] == 1:
        shape = shape[1:]  # a batch of one is accepted too
    fixed = [d for d in expected.shape if isinstance(d, int)]
    if len(shape) != len(expected.shape) or list(shape[: len(fixed)]) != fixed or min(shape, default=0) < 1:
        raise InvalidInputError(f"latent shape {list(shape)} does not match {expected.shape}")
    spec = image_spec(model)
    f = spec.stride_multiple
    full = (shape[1] * f, shape[2] * f) if expected.kind == "spatial" else spec.fixed_size
    assert full is not None
    what = f"latent of shape {list(shape)} decodes to an image of"
    check_run_size(what, full[0], full[1], f, SizeLimits.from_settings(settings))
    return full


def prepare_latent(
    model: LoadedModel, latent: np.ndarray, size: tuple[int, int] | None, settings: Settings
) -> Prepared:
    """Check a latent against the model's latent spec and the size limits; the key is its shape.

    A declared `size` must pad to exactly the image the latent decodes to, which the limits were checked on.
    """
    full = check_latent_shape(model, latent.shape, settings)
    if latent.ndim == len(model.manifest.latent.shape) + 1:
        latent = latent[0]  # a batch of one
    if not np.isfinite(latent).all():
        raise InvalidInputError("latent holds NaN or Inf")
    f = image_spec(model).stride_multiple
    if size is not None and not (
        0 < size[0] <= full[0] and 0 < size[1] <= full[1] and full[0] - size[0] < f and full[1] - size[1] < f
    ):
        raise InvalidInputError(f"image size {size[0]}x{size[1]} does not fit a latent decoding to {full[0]}x{full[1]}")
    return Prepared(latent.shape, {"latent": np.ascontiguousarray(latent[None])}, size or full)


# ---------------------------------------------------------------- sequences


@dataclass
class SequenceContext:
    """What is needed to answer: each series' length and normalisation statistics."""

    lengths: list[int]
    scaled: list[np.ndarray]
    means: list[np.ndarray]
    stds: list[np.ndarray]


def _bucket(length: int) -> int:
    return -(-length // LENGTH_BUCKET) * LENGTH_BUCKET


def prepare_sequences(model: LoadedModel, raw: Any, settings: Settings) -> Prepared:
    """Validate, normalise and pad a batch of series; the key is the padded length bucket."""
    spec = sequence_spec(model)
    series = parse_sequences(raw, spec, settings.max_batch_sequences, settings.max_sequence_length)
    scaled = [normalize(s, spec.normalization) for s in series]
    bucket = _bucket(max(len(s) for s in series))
    padded, lengths = pad_batch([s for s, _, _ in scaled], bucket)
    context = SequenceContext(
        lengths.tolist(), [s for s, _, _ in scaled], [m for _, m, _ in scaled], [d for _, _, d in scaled]
    )
    return Prepared(bucket, {"sequences": padded, "lengths": lengths}, context)


def _as_json_series(series: np.ndarray) -> list[Any]:
    # Univariate series go back as flat lists, mirroring how they were sent.
    return series[:, 0].tolist() if series.shape[1] == 1 else series.tolist()


def finish_embeddings(outputs: Feeds, context: SequenceContext) -> list[list[float]]:
    """One embedding per series."""
    return outputs["latent"].tolist()


def finish_reconstructions(outputs: Feeds, context: SequenceContext) -> tuple[list[Any], list[float]]:
    """(reconstructions in the caller's units, per-series MSE in normalised units)."""
    recons, errors = [], []
    for i, length in enumerate(context.lengths):
        scaled = outputs["reconstruction"][i, :length]
        errors.append(float(np.mean((scaled - context.scaled[i]) ** 2)))
        recons.append(_as_json_series(denormalize(scaled, context.means[i], context.stds[i])))
    return recons, errors


def prepare_embeddings(model: LoadedModel, embeddings: Any, lengths: Any, settings: Settings) -> Prepared:
    """Validate embeddings and the lengths to decode; the key is the length bucket."""
    spec = sequence_spec(model)
    size = model.manifest.latent.shape[0]
    if not isinstance(lengths, list) or not all(isinstance(n, int) and not isinstance(n, bool) for n in lengths):
        raise InvalidInputError("lengths must be a list of integers")
    try:
        latent = np.asarray(embeddings, dtype=np.float32)
    except (ValueError, TypeError) as error:
        raise InvalidInputError("embeddings must be a list of equal-length number lists") from error
    if latent.ndim != 2 or latent.shape[1] != size or latent.shape[0] == 0:
        raise InvalidInputError(f"embeddings must have shape [batch, {size}]; got {list(latent.shape)}")
    if latent.shape[0] > settings.max_batch_sequences:
        raise InvalidInputError(f"batch of {latent.shape[0]} exceeds the limit of {settings.max_batch_sequences}")
    if len(lengths) != latent.shape[0]:
        raise InvalidInputError("lengths must hold one integer per embedding")
    if not np.isfinite(latent).all():
        raise InvalidInputError("embeddings hold NaN or Inf")
    longest = min(spec.max_length, settings.max_sequence_length)
    if min(lengths) < spec.min_length or max(lengths) > longest:
        raise InvalidInputError(f"lengths must be between {spec.min_length} and {longest}")
    norm = spec.normalization
    mean = np.asarray(norm.mean if norm.kind == "dataset" else [0.0] * spec.features, np.float32)
    std = np.asarray(norm.std if norm.kind == "dataset" else [1.0] * spec.features, np.float32)
    context = SequenceContext(lengths, [], [mean] * len(lengths), [std] * len(lengths))
    return Prepared(_bucket(max(lengths)), {"latent": latent, "lengths": np.asarray(lengths, np.int64)}, context)


def finish_decoded(outputs: Feeds, context: SequenceContext) -> list[Any]:
    """Series cut to their lengths (normalised units unless the model uses dataset statistics)."""
    return [
        _as_json_series(denormalize(outputs["reconstruction"][i, :n], context.means[i], context.stds[i]))
        for i, n in enumerate(context.lengths)
    ]


# ---------------------------------------------------------------- one-shot helpers (no batching)


def image_reconstruct(model: LoadedModel, data: bytes, mime: str, settings: Settings) -> bytes:
    """Encoded image in, encoded reconstruction of the same size out."""
    return run_direct(model, "reconstruct", prepare_image(model, data, settings), finish_image, mime, settings)


def sequence_encode(model: LoadedModel, raw: Any, settings: Settings) -> list[list[float]]:
    """Embeddings of a batch of series."""
    return run_direct(model, "encode", prepare_sequences(model, raw, settings), finish_embeddings)


def sequence_reconstruct(model: LoadedModel, raw: Any, settings: Settings) -> tuple[list[Any], list[float]]:
    """Reconstructions and per-series errors of a batch of series."""
    return run_direct(model, "reconstruct", prepare_sequences(model, raw, settings), finish_reconstructions)
