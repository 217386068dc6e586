"""Sequences <-> arrays: validation of a JSON batch, normalisation, padding.

Training imports `normalize`/`denormalize` from here so a model sees exactly the same scaling at
training time and behind the HTTP API.

Numbers stay within float32's arithmetic from the request to the answer, so no answer holds a null
(JSON's rendering of NaN and Inf): values are at most `MAX_VALUE_MAGNITUDE` in size, normalised values
at most `MAX_SCALED_MAGNITUDE`, and both are checked before inference (422). `[1e308, 1e308, 1e308,
-1e308, 5]` was finite, overflowed in the mean and answered 200 with nulls.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from service.errors import InvalidInputError
from service.manifest import SequenceInputSpec, SequenceNormalization

# float32 holds up to 3.4e38. The answer multiplies a reconstruction (in normalised units) by the
# series' spread and adds its mean, so values are capped 8 orders of magnitude below that.
MAX_VALUE_MAGNITUDE = 1e30
# Normalised values feed the graph and the per-series squared error (float32): capped so that a
# square stays finite (dataset statistics with a tiny std can scale a moderate value far up).
MAX_SCALED_MAGNITUDE = 1e15
_TOO_LARGE = (
    "a series holds values too large for float32 arithmetic once normalised; send values within "
    f"+-{MAX_VALUE_MAGNITUDE:.0e} (rescale the series, e.g. to other units)"
)


def normalize(series: np.ndarray, spec: SequenceNormalization) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scale one (T, F) series; returns (scaled, mean, std) so the caller can undo it.

    422 when the statistics or the scaled values leave float32's range (see `MAX_SCALED_MAGNITUDE`),
    which values within `MAX_VALUE_MAGNITUDE` never do with per-series statistics.
    """
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is checked below, not warned about
        scaled, mean, std = _scale(series, spec)
    if not (np.isfinite(mean).all() and np.isfinite(std).all() and np.isfinite(scaled).all()):
        raise InvalidInputError(_TOO_LARGE)
    if scaled.size and float(np.abs(scaled).max()) > MAX_SCALED_MAGNITUDE:
        raise InvalidInputError(_TOO_LARGE)
    return scaled, mean, std


def _scale(series: np.ndarray, spec: SequenceNormalization) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    features = series.shape[-1]
    if spec.kind == "per_series":
        # Written out: np.std's generic path costs more than the arithmetic on a short series.
        mean = series.mean(axis=0)
        centred = series - mean
        std = np.maximum(np.sqrt(np.einsum("tf,tf->f", centred, centred) / len(series)), spec.epsilon)
    elif spec.kind == "dataset":
        assert spec.mean is not None and spec.std is not None
        mean = np.asarray(spec.mean, dtype=np.float64)
        std = np.maximum(np.asarray(spec.std, dtype=np.float64), spec.epsilon)
    else:
        mean, std = np.zeros(features), np.ones(features)
    scaled = ((series - mean) / std).astype(np.float32)
    return scaled, mean.astype(np.float32), std.astype(np.float32)


def denormalize(scaled: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Undo `normalize` for a (T, F) series.

    The input bounds keep this finite for any sane reconstruction; should a graph still answer values
    that overflow here, the request is refused (422) rather than answered with nulls.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        restored = (scaled * std + mean).astype(np.float32)
    if not np.isfinite(restored).all():
        raise InvalidInputError(
            "the model's answer for a series overflows float32 in the series' units; "
            "send the series rescaled to smaller values"
        )
    return restored


def pad_batch(series: list[np.ndarray], length: int) -> tuple[np.ndarray, np.ndarray]:
    """Stack (T_i, F) series into zero-padded (B, length, F) plus int64 lengths (B,).

    `length` is at least the longest series (the batcher's length bucket).
    """
    lengths = np.array([len(s) for s in series], dtype=np.int64)
    batch = np.zeros((len(series), length, series[0].shape[1]), dtype=np.float32)
    for row, item in zip(batch, series, strict=True):
        row[: len(item)] = item
    return batch, lengths


def _as_series(index: int, raw: Any, features: int) -> np.ndarray:
    """One series from JSON: a list of numbers (univariate) or of feature vectors."""
    where = f"sequences[{index}]"
    if not isinstance(raw, list) or not raw:
        raise InvalidInputError(f"{where} must be a non-empty list")
    if _NUMBER_TYPES.issuperset(map(type, raw)):  # one pass in C
        # Univariate, the common case: a flat list converts in one C call (no per-step lists).
        array = np.array(raw, dtype=np.float64).reshape(-1, 1)
    elif all(isinstance(v, list) for v in raw):
        widths = {len(v) for v in raw}
        if len(widths) != 1:
            raise InvalidInputError(f"{where} is ragged: its steps have {sorted(widths)} features")
        if not all(_NUMBER_TYPES.issuperset(map(type, v)) for v in raw):
            raise InvalidInputError(f"{where} holds a value that is not a number")
        array = np.array(raw, dtype=np.float64)
    else:
        raise InvalidInputError(f"{where} must hold only numbers, or only lists of numbers")
    if array.shape[1] != features:
        raise InvalidInputError(f"{where} has {array.shape[1]} features; this model expects {features}")
    check_series_values(where, array)
    return array


def check_series_values(where: str, array: np.ndarray) -> None:
    """422 when a series holds NaN, Inf, or values too large for the float32 arithmetic of normalising."""
    if not np.isfinite(array).all():
        raise InvalidInputError(f"{where} holds NaN or Inf")
    if array.size and float(np.abs(array).max()) > MAX_VALUE_MAGNITUDE:
        raise InvalidInputError(
            f"{where} holds a value beyond +-{MAX_VALUE_MAGNITUDE:.0e}, too large for float32 arithmetic; "
            "rescale the series (e.g. to other units)"
        )


# Exact types, as json.loads produces them: bool (an int subclass) is excluded, since true/false are
# not measurements, and so is every other subclass.
_NUMBER_TYPES = frozenset({int, float})


def parse_sequences(raw: Any, spec: SequenceInputSpec, max_batch: int, max_length: int) -> list[np.ndarray]:
    """Validate a JSON batch of series against the model's input spec; raise InvalidInputError."""
    if not isinstance(raw, list) or not raw:
        raise InvalidInputError("`sequences` must be a non-empty list of series")
    if len(raw) > max_batch:
        raise InvalidInputError(f"batch of {len(raw)} series exceeds the limit of {max_batch}")
    longest = min(spec.max_length, max_length)
    for i, item in enumerate(raw):
        # Checked before conversion: an over-long series is refused without being parsed.
        if isinstance(item, list) and not spec.min_length <= len(item) <= longest:
            raise InvalidInputError(
                f"sequences[{i}] has {len(item)} steps; this model accepts {spec.min_length} to {longest}"
            )
    return [_as_series(i, item, spec.features) for i, item in enumerate(raw)]


# ---------------------------------------------------------------- windows over long recordings

# The densest overlap allowed: a stride of at least 1/8 of the window, so each step is in at most 8
# strided windows (9 with the window aligned to the end). A windowed request then costs about 8x the
# graph work of its steps sent once at most, so the body's size keeps bounding its work (the event-loop
# shortcut for small bodies relies on that), and denser windows would mostly repeat the same scores.
MIN_STRIDE_FRACTION = 8


def min_stride(window: int) -> int:
    """The smallest stride accepted for `window` steps: ceil(window / 8)."""
    return -(-window // MIN_STRIDE_FRACTION)


def window_count(length: int, window: int, stride: int) -> int:
    """How many windows `window_starts` places on a series of `length` >= `window` steps, by arithmetic."""
    return 1 + -(-(length - window) // stride)


def window_starts(length: int, window: int, stride: int) -> list[int]:
    """Starts of the windows over `length` >= `window` steps.

    Every `stride` steps from 0, and when the tail does not fit a whole stride, one last window aligned
    to the end, so every step is scored and every window has exactly `window` steps (no padding, no
    partial window).
    """
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] != length - window:
        starts.append(length - window)
    return starts


def parse_windowing(window: Any, stride: Any, shortest: int, longest: int) -> tuple[int, int]:
    """A body's `window` and `stride`, validated.

    The caller passes the window as the stride when the body has none (windows side by side). 422
    unless `shortest` <= window <= `longest` (the model's lengths) and ceil(window / 8) <= stride <=
    window. A stride above the window would leave steps between windows that nothing scores.
    """
    if not _is_int(window) or not shortest <= window <= longest:
        raise InvalidInputError(f"window must be an integer from {shortest} to {longest}; got {window!r}")
    floor = min_stride(window)
    if not _is_int(stride) or not floor <= stride <= window:
        raise InvalidInputError(
            f"stride must be an integer from {floor} (window / 8) to the window ({window}); got {stride!r}"
        )
    return window, stride


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_windowed_sequences(
    raw: Any, spec: SequenceInputSpec, max_windows: int, max_length: int, window: int, stride: int
) -> list[tuple[int, int, np.ndarray]]:
    """Validate long series and cut them into windows: (series index, start, (window, F) array).

    Each series may be up to `max_length` steps (AE_MAX_SEQUENCE_LENGTH; only the window must fit the
    model) and at least one window long. The windows are counted from the list lengths before any
    series is converted, and more than `max_windows` (AE_MAX_BATCH_SEQUENCES) is 422.
    """
    if not isinstance(raw, list) or not raw:
        raise InvalidInputError("`sequences` must be a non-empty list of series")
    if len(raw) > max_windows:
        raise InvalidInputError(f"batch of {len(raw)} series exceeds the limit of {max_windows}")
    total = 0
    for i, item in enumerate(raw):
        if isinstance(item, list):
            if not window <= len(item) <= max_length:
                raise InvalidInputError(
                    f"sequences[{i}] has {len(item)} steps; with a window of {window} a series needs "
                    f"{window} to {max_length}"
                )
            total += window_count(len(item), window, stride)
    if total > max_windows:
        raise InvalidInputError(
            f"{total} windows (window {window}, stride {stride}) exceed the limit of {max_windows} per request; "
            "use a longer stride or send fewer steps"
        )
    windows: list[tuple[int, int, np.ndarray]] = []
    for i, item in enumerate(raw):
        series = _as_series(i, item, spec.features)
        windows.extend(
            (i, start, series[start : start + window]) for start in window_starts(len(series), window, stride)
        )
    return windows
