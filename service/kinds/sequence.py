"""Sequence autoencoders: series in (JSON); embeddings, or reconstructions with per-series errors, out.

Stages: `prepare_sequences` (validate, normalise, pad to a length bucket) and `prepare_embeddings`
(embeddings and the lengths to decode to), and the finishes that cut the outputs back to each series.
The JSON body is parsed in the prepare stage, so in a worker thread unless it is small (see
`service.batching`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import orjson

from service.api.bodies import require_media
from service.codecs.json_body import parse_json
from service.codecs.sequence import denormalize, normalize, pad_batch, parse_sequences
from service.config import Settings
from service.errors import InvalidInputError
from service.kinds.base import Call, ModelHandler, object_fields
from service.manifest import AnomalyCalibration, SequenceInputSpec
from service.model import LoadedModel
from service.stages import Answer, Feeds, Job, Prepared, run_direct

# Series are padded up to a multiple of this, so requests of similar lengths can share a batch.
LENGTH_BUCKET = 16
JSON = "application/json"


@dataclass
class SequenceContext:
    """What is needed to answer: each series' length and normalisation statistics."""

    lengths: list[int]
    scaled: list[np.ndarray]
    means: list[np.ndarray]
    stds: list[np.ndarray]


def sequence_spec(model: LoadedModel) -> SequenceInputSpec:
    """The sequence input spec, or 422 when the model takes images."""
    spec = model.manifest.input
    if not isinstance(spec, SequenceInputSpec):
        raise InvalidInputError(f"model {model.manifest.name!r} takes images, not sequences")
    return spec


def _bucket(length: int) -> int:
    return -(-length // LENGTH_BUCKET) * LENGTH_BUCKET


def prepare_sequences(model: LoadedModel, raw: Any, settings: Settings) -> Prepared[SequenceContext]:
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
    embeddings: list[list[float]] = outputs["latent"].tolist()
    return embeddings


def finish_reconstructions(outputs: Feeds, context: SequenceContext) -> tuple[list[Any], list[float]]:
    """(reconstructions in the caller's units, per-series MSE in normalised units)."""
    recons, errors = [], []
    for i, length in enumerate(context.lengths):
        scaled = outputs["reconstruction"][i, :length]
        errors.append(float(np.mean((scaled - context.scaled[i]) ** 2)))
        recons.append(_as_json_series(denormalize(scaled, context.means[i], context.stds[i])))
    return recons, errors


def prepare_embeddings(
    model: LoadedModel, embeddings: Any, lengths: Any, settings: Settings
) -> Prepared[SequenceContext]:
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


def caller_threshold(payload: Any) -> float | None:
    """The optional `threshold` of a reconstruct body: a finite number >= 0, else 422."""
    if not isinstance(payload, dict) or "threshold" not in payload:
        return None
    value = payload["threshold"]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise InvalidInputError(f"threshold must be a finite number >= 0; got {value!r}")
    return float(value)


def anomaly_fields(
    errors: list[float], calibration: AnomalyCalibration | None, threshold: float | None
) -> dict[str, list[Any]]:
    """`percentiles` (with a calibration) and `anomaly` flags (with any threshold) of per-series errors.

    The caller's threshold, when given, decides `anomaly` instead of the stored one; percentiles always
    place the score among the calibration scores, whatever threshold decides.
    """
    fields: dict[str, list[Any]] = {}
    if calibration is not None:
        fields["percentiles"] = [calibration.percentile(e) for e in errors]
    decisive = threshold if threshold is not None else (calibration.threshold if calibration else None)
    if decisive is not None:
        fields["anomaly"] = [e > decisive for e in errors]
    return fields


def sequence_encode(model: LoadedModel, raw: Any, settings: Settings) -> list[list[float]]:
    """Embeddings of a batch of series (one request, no batching)."""
    job = Job(partial(prepare_sequences, model, raw, settings), finish_embeddings)
    return run_direct(model.engine_for("encode"), job)


def sequence_reconstruct(model: LoadedModel, raw: Any, settings: Settings) -> tuple[list[Any], list[float]]:
    """Reconstructions and per-series errors of a batch of series (one request, no batching)."""
    job = Job(partial(prepare_sequences, model, raw, settings), finish_reconstructions)
    return run_direct(model.engine_for("reconstruct"), job)


class SequenceHandler(ModelHandler):
    """encode: series -> embeddings; decode: embeddings + lengths -> series; reconstruct: series -> series + errors."""

    kind = "sequence"
    # Set by the metrics (`ServiceMetrics.observe_scores`): called with each reconstruct answer's
    # per-series errors, for the drift histograms and counters.
    on_scored: Callable[[list[float]], None] | None = None

    @classmethod
    def serves(cls, model: LoadedModel) -> bool:
        """Every model that takes sequences."""
        return isinstance(model.manifest.input, SequenceInputSpec)

    def _prepare_series(self, body: bytes) -> Prepared[SequenceContext]:
        (raw,) = object_fields(parse_json(body), "sequences")
        return prepare_sequences(self.model, raw, self.settings)

    def _small(self, call: Call) -> bool:
        # A small body's whole work may run on the event loop of an idle process (no thread hop). Not
        # for decode: a small body there can ask for `max_length` steps per series.
        return len(call.body) <= self.settings.loop_inline_max_bytes

    def _json(self, fields: dict[str, Any]) -> Answer:
        return Answer(orjson.dumps({**fields, **self.ids()}), JSON)

    async def encode(self, call: Call) -> Answer:
        """Embeddings of a batch of series."""
        require_media(call.request, JSON)

        def finish(outputs: Feeds, context: SequenceContext) -> Answer:
            return self._json({"embeddings": finish_embeddings(outputs, context)})

        return await self.run("encode", call, Job(partial(self._prepare_series, call.body), finish, self._small(call)))

    async def decode(self, call: Call) -> Answer:
        """Series of the given lengths decoded from embeddings."""
        require_media(call.request, JSON)

        def prepare() -> Prepared[SequenceContext]:
            embeddings, lengths = object_fields(parse_json(call.body), "embeddings", "lengths")
            return prepare_embeddings(self.model, embeddings, lengths, self.settings)

        def finish(outputs: Feeds, context: SequenceContext) -> Answer:
            return self._json({"reconstructions": finish_decoded(outputs, context)})

        return await self.run("decode", call, Job(prepare, finish))

    async def reconstruct(self, call: Call) -> Answer:
        """Reconstructions of a batch of series and their errors (anomaly scores).

        With a threshold (the manifest's calibrated one, or the body's `threshold`, which wins) each
        series also gets an `anomaly` flag; with a calibration, the percentile of its error.
        """
        require_media(call.request, JSON)
        threshold: float | None = None

        def prepare() -> Prepared[SequenceContext]:
            nonlocal threshold
            payload = parse_json(call.body)
            (raw,) = object_fields(payload, "sequences")
            threshold = caller_threshold(payload)
            return prepare_sequences(self.model, raw, self.settings)

        def finish(outputs: Feeds, context: SequenceContext) -> Answer:
            reconstructions, errors = finish_reconstructions(outputs, context)
            if self.on_scored is not None:
                self.on_scored(errors)
            extra = anomaly_fields(errors, self.model.manifest.anomaly, threshold)
            return self._json({"reconstructions": reconstructions, "errors": errors, **extra})

        return await self.run("reconstruct", call, Job(prepare, finish, self._small(call)))
