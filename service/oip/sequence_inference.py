"""OIP inference on sequence models: FP32 `[batch, time, features]` plus INT64 `lengths`, as one job.

Each row is cut to its length (default: the whole time axis), checked like a `/v1` series (lengths within
the model's and the service's limits, finite values of a sane magnitude), normalised and padded to a
length bucket: the rows run as one batch, and batch with `/v1` requests of that bucket.
Reconstructions come back padded with zeros beyond each row's length, beside the lengths.
"""

from __future__ import annotations

import numpy as np

from service.codecs.sequence import check_series_values, denormalize
from service.config import Settings
from service.errors import InvalidInputError
from service.kinds.sequence import (
    SequenceContext,
    SequenceHandler,
    anomaly_fields,
    caller_threshold,
    finish_errors,
    length_bucket,
    prepare_embeddings,
    prepared_rows,
    sequence_spec,
)
from service.oip.checks import check_batch, check_parameters, checked_inputs
from service.oip.models import OipModel
from service.oip.rest import InferRequest
from service.oip.tensors import Tensor
from service.stages import Feeds, Job, Prepared


def _lengths(oip: OipModel, inputs: dict[str, Tensor], rows: int, steps: int, settings: Settings) -> list[int]:
    """Each row's length: the `lengths` input, or the whole time axis; 400 outside the model's range."""
    spec = sequence_spec(oip.model)
    lengths = inputs["lengths"].array().tolist() if "lengths" in inputs else [steps] * rows
    if len(lengths) != rows:
        raise InvalidInputError(f"{oip.name}: lengths must hold one length per row ({rows})")
    longest = min(spec.max_length, settings.max_sequence_length, steps)
    if not all(spec.min_length <= n <= longest for n in lengths):
        raise InvalidInputError(f"{oip.name}: every length must be between {spec.min_length} and {longest}")
    return [int(n) for n in lengths]


def _number(value: object) -> object:
    """A parameter meant as a number; a numeric string counts (tritonclient's gRPC parameters cannot be floats)."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value  # refused by `caller_threshold`, which names it
    return value


def _prepare_rows(oip: OipModel, values: np.ndarray, lengths: list[int]) -> Prepared[SequenceContext]:
    rows = [values[i, :n].astype(np.float64) for i, n in enumerate(lengths)]
    for i, row in enumerate(rows):
        check_series_values(f"sequences[{i}]", row)
    return prepared_rows(rows, sequence_spec(oip.model), length_bucket(max(lengths)))


def _padded_series(outputs: Feeds, context: SequenceContext) -> np.ndarray:
    """Rows back in the caller's units, zero beyond each length."""
    reconstruction = outputs["reconstruction"]
    longest = max(context.lengths)
    series = np.zeros((len(context.lengths), longest, reconstruction.shape[2]), np.float32)
    for i, n in enumerate(context.lengths):
        series[i, :n] = denormalize(reconstruction[i, :n], context.means[i], context.stds[i])
    return series


async def infer_sequences(
    oip: OipModel, request: InferRequest, settings: Settings, deadline: float, small: bool = False
) -> list[Tensor]:
    """One request to a sequence model's operation (`small`: encode and reconstruct may run inline)."""
    inputs = checked_inputs(oip, request)
    operation, handler = oip.operation, oip.model.handler
    check_parameters(oip, request, frozenset({"threshold"}) if operation == "reconstruct" else frozenset())
    if operation == "decode":
        return await _decoded(oip, inputs, settings, deadline)
    values = inputs["sequences"].array()
    rows, steps = values.shape[0], values.shape[1]
    check_batch(oip, rows, settings.max_batch_sequences, "series")
    lengths = _lengths(oip, inputs, rows, steps, settings)
    threshold = caller_threshold(
        {"threshold": _number(request.parameters["threshold"])} if "threshold" in request.parameters else {}
    )

    def prepare() -> Prepared[SequenceContext]:
        return _prepare_rows(oip, values, lengths)

    def finish(outputs: Feeds, context: SequenceContext) -> list[Tensor]:
        if operation == "encode":
            embeddings = np.ascontiguousarray(outputs["latent"], np.float32)
            return [Tensor("embeddings", "FP32", embeddings.shape, embeddings)]
        series = _padded_series(outputs, context)
        errors = finish_errors(outputs, context)
        if isinstance(handler, SequenceHandler) and handler.on_scored is not None:
            handler.on_scored(errors)
        answer = [
            Tensor("reconstructions", "FP32", series.shape, series),
            Tensor("errors", "FP32", (rows,), np.asarray(errors, np.float32)),
        ]
        extra = anomaly_fields(errors, oip.model.manifest.anomaly, threshold)
        if "percentiles" in extra:
            answer.append(Tensor("percentiles", "FP32", (rows,), np.asarray(extra["percentiles"], np.float32)))
        if "anomaly" in extra:
            answer.append(Tensor("anomaly", "BOOL", (rows,), np.asarray(extra["anomaly"], np.bool_)))
        return answer

    # Not for decode (as on `/v1`): a small body there can ask for many steps per series.
    return await handler.batcher_for(operation).execute(Job(prepare, finish, small), deadline)


async def _decoded(oip: OipModel, inputs: dict[str, Tensor], settings: Settings, deadline: float) -> list[Tensor]:
    embeddings = inputs["embeddings"].array()
    lengths = inputs["lengths"].array()
    rows = embeddings.shape[0]

    def prepare() -> Prepared[SequenceContext]:
        return prepare_embeddings(oip.model, embeddings, lengths.tolist(), settings)

    def finish(outputs: Feeds, context: SequenceContext) -> list[Tensor]:
        series = _padded_series(outputs, context)
        sent = np.asarray(context.lengths, np.int64)
        return [Tensor("reconstructions", "FP32", series.shape, series), Tensor("lengths", "INT64", (rows,), sent)]

    return await oip.model.handler.batcher_for("decode").execute(Job(prepare, finish), deadline)
