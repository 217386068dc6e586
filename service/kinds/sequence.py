"""Sequence autoencoders: series in (JSON); embeddings, or reconstructions with per-series errors, out.

Stages: `prepare_sequences` (validate, normalise, pad to a length bucket) and `prepare_embeddings`
(embeddings and the lengths to decode to), and the finishes that cut the outputs back to each series.
With `window`/`stride` in an encode or reconstruct body, `prepare_windows` cuts each (long) series into
windows instead, and every answer is per window.
The JSON body is parsed in the prepare stage, so in a worker thread unless it is small (see
`service.batching`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import orjson

from service.api.bodies import require_media
from service.codecs.json_body import parse_json
from service.codecs.sequence import (
    denormalize,
    normalize,
    pad_batch,
    parse_sequences,
    parse_windowed_sequences,
    parse_windowing,
)
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
    """What is needed to answer: each row's length and normalisation statistics.

    `windows`: with `window` in the body, each row is a window, and this says where it starts
    (`{"series": i, "start": s}`, aligned with the rows); empty otherwise.
    """

    lengths: list[int]
    scaled: list[np.ndarray]
    means: list[np.ndarray]
    stds: list[np.ndarray]
    windows: list[dict[str, int]] = field(default_factory=list)


@dataclass(frozen=True)
class Windowing:
    """A body's `window` and `stride` (validated)."""

    window: int
    stride: int


def sequence_spec(model: LoadedModel) -> SequenceInputSpec:
    """The sequence input spec, or 422 when the model takes images."""
    spec = model.manifest.input
    if not isinstance(spec, SequenceInputSpec):
        raise InvalidInputError(f"model {model.manifest.name!r} takes images, not sequences")
    return spec


def length_bucket(length: int) -> int:
    """The padded length a series of `length` steps runs at (requests in one bucket can share a batch)."""
    return -(-length // LENGTH_BUCKET) * LENGTH_BUCKET


def prepare_sequences(model: LoadedModel, raw: Any, settings: Settings) -> Prepared[SequenceContext]:
    """Validate, normalise and pad a batch of series; the key is the padded length bucket."""
    spec = sequence_spec(model)
    series = parse_sequences(raw, spec, settings.max_batch_sequences, settings.max_sequence_length)
    return prepared_rows(series, spec, length_bucket(max(len(s) for s in series)))


def prepared_rows(
    rows: list[np.ndarray], spec: SequenceInputSpec, bucket: int, windows: list[dict[str, int]] | None = None
) -> Prepared[SequenceContext]:
    """Normalise each row on its own, pad them to `bucket` (a multiple of LENGTH_BUCKET); the key is the bucket."""
    scaled = [normalize(row, spec.normalization) for row in rows]
    padded, lengths = pad_batch([s for s, _, _ in scaled], bucket)
    context = SequenceContext(
        lengths.tolist(),
        [s for s, _, _ in scaled],
        [m for _, m, _ in scaled],
        [d for _, _, d in scaled],
        windows or [],
    )
    return Prepared(bucket, {"sequences": padded, "lengths": lengths}, context)


def caller_windowing(payload: Any, spec: SequenceInputSpec, settings: Settings) -> Windowing | None:
    """The optional `window`/`stride` of an encode or reconstruct body; None without a window, 422 when bad."""
    if not isinstance(payload, dict) or ("window" not in payload and "stride" not in payload):
        return None
    if "window" not in payload:
        raise InvalidInputError("stride needs a window")
    longest = min(spec.max_length, settings.max_sequence_length)
    # Without a stride, windows sit side by side; an explicit null is refused like any non-integer.
    stride = payload["stride"] if "stride" in payload else payload["window"]
    window, stride = parse_windowing(payload["window"], stride, spec.min_length, longest)
    return Windowing(window, stride)


def prepare_windows(
    model: LoadedModel, raw: Any, windowing: Windowing, settings: Settings
) -> Prepared[SequenceContext]:
    """Cut long series into windows and prepare them as rows, each exactly as if it were sent alone.

    Each window is normalised on its own (per-series statistics are the window's), so its score equals
    reconstructing that window by itself. All windows have the same length, so they share one bucket
    with any other request of that length.
    """
    spec = sequence_spec(model)
    windows = parse_windowed_sequences(
        raw, spec, settings.max_batch_sequences, settings.max_sequence_length, windowing.window, windowing.stride
    )
    starts = [{"series": i, "start": start} for i, start, _ in windows]
    return prepared_rows([w for _, _, w in windows], spec, length_bucket(windowing.window), starts)


def _row_error(reconstruction: np.ndarray, context: SequenceContext, row: int) -> float:
    """One row's MSE in normalised units (its anomaly score)."""
    return float(np.mean((reconstruction - context.scaled[row]) ** 2))


def finish_errors(outputs: Feeds, context: SequenceContext) -> list[float]:
    """Per-row MSE in normalised units, without building the reconstructions."""
    return [_row_error(outputs["reconstruction"][i, :length], context, i) for i, length in enumerate(context.lengths)]


def include_reconstructions(payload: Any, windowing: Windowing | None) -> bool:
    """Whether a reconstruct answer carries the reconstructions.

    Always without windows; with windows only when the body says `"include_reconstructions": true`,
    since a long recording's windows would otherwise answer several copies of it.
    """
    value = payload.get("include_reconstructions", False) if isinstance(payload, dict) else False
    if not isinstance(value, bool):
        raise InvalidInputError(f"include_reconstructions must be true or false; got {value!r}")
    if value and windowing is None:
        raise InvalidInputError("include_reconstructions needs a window (without one, reconstructions always come)")
    return windowing is None or value


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
        errors.append(_row_error(scaled, context, i))
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
    return Prepared(length_bucket(max(lengths)), {"latent": latent, "lengths": np.asarray(lengths, np.int64)}, context)


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

    # Set by the metrics (`ServiceMetrics.observe_scores`): called with each reconstruct answer's
    # per-series errors, for the drift histograms and counters.
    on_scored: Callable[[list[float]], None] | None = None

    @classmethod
    def serves(cls, model: LoadedModel) -> bool:
        """Every model that takes sequences."""
        return isinstance(model.manifest.input, SequenceInputSpec)

    def _windowing(self, payload: Any) -> Windowing | None:
        return caller_windowing(payload, sequence_spec(self.model), self.settings)

    def _prepare_series(self, payload: Any, windowing: Windowing | None) -> Prepared[SequenceContext]:
        """Series, or with `window` in the body, their windows."""
        (raw,) = object_fields(payload, "sequences")
        if windowing is None:
            return prepare_sequences(self.model, raw, self.settings)
        return prepare_windows(self.model, raw, windowing, self.settings)

    @staticmethod
    def _windows(context: SequenceContext) -> dict[str, Any]:
        return {"windows": context.windows} if context.windows else {}

    def _small(self, call: Call) -> bool:
        # A small body's whole work may run on the event loop of an idle process (no thread hop). Not
        # for decode: a small body there can ask for `max_length` steps per series.
        return len(call.body) <= self.settings.loop_inline_max_bytes

    def _json(self, fields: dict[str, Any]) -> Answer:
        return Answer(orjson.dumps({**fields, **self.ids()}), JSON)

    async def encode(self, call: Call) -> Answer:
        """Embeddings of a batch of series."""
        require_media(call.request, JSON)

        def prepare() -> Prepared[SequenceContext]:
            payload = parse_json(call.body)
            return self._prepare_series(payload, self._windowing(payload))

        def finish(outputs: Feeds, context: SequenceContext) -> Answer:
            return self._json({"embeddings": finish_embeddings(outputs, context), **self._windows(context)})

        return await self.run("encode", call, Job(prepare, finish, self._small(call)))

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
        with_reconstructions = True

        def prepare() -> Prepared[SequenceContext]:
            nonlocal threshold, with_reconstructions
            payload = parse_json(call.body)
            windowing = self._windowing(payload)
            threshold = caller_threshold(payload)
            with_reconstructions = include_reconstructions(payload, windowing)
            return self._prepare_series(payload, windowing)

        def finish(outputs: Feeds, context: SequenceContext) -> Answer:
            fields: dict[str, Any] = {}
            if with_reconstructions:
                fields["reconstructions"], errors = finish_reconstructions(outputs, context)
            else:
                errors = finish_errors(outputs, context)
            if self.on_scored is not None:
                self.on_scored(errors)
            extra = anomaly_fields(errors, self.model.manifest.anomaly, threshold)
            return self._json({**fields, "errors": errors, **extra, **self._windows(context)})

        return await self.run("reconstruct", call, Job(prepare, finish, self._small(call)))
