"""Series as read from a file, before and after the missing-value policy.

Readers turn cells into floats with NaN where a value is missing (an empty cell, `NA`, `N/A`,
`NaN`, `null`, `None`, in any case) and keep a way to name any cell, so every refusal can say where
the problem sits. `resolve_missing` then applies one rule to every format:

- trailing missing values end a series early: that is how a rectangular file (UCR's NaN padding, a
  CSV row with empty cells at its end) holds series of different lengths;
- any other missing value is refused with its 1-based place in the file, or, with `interpolate`,
  filled linearly from its neighbours in the same series (a leading gap takes the first value);
- a series with no value at all is refused under either policy: there is nothing to fill it from.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

MissingPolicy = Literal["refuse", "interpolate"]
MISSING_MARKERS = frozenset({"", "na", "n/a", "nan", "null", "none"})


def is_missing(cell: str) -> bool:
    """Whether a cell's text marks a missing value."""
    return cell.strip().lower() in MISSING_MARKERS


def parse_number(cell: str) -> float | None:
    """The cell's number, NaN for a missing marker, None for any other text."""
    if is_missing(cell):
        return float("nan")
    try:
        value = float(cell)
    except ValueError:
        return None
    # float() also takes "inf"; an infinite sample is no more usable than a missing one.
    return value if np.isfinite(value) else None


@dataclass
class SequenceSet:
    """Series of shape (T_i, F) with optional integer labels.

    `notes` says what reading did beyond copying numbers (a header taken, values filled, series
    ended early), for the summary printed at the start of training.
    """

    series: list[np.ndarray]
    labels: list[int] | None
    notes: list[str] = field(default_factory=list)


@dataclass
class RawSeries:
    """Series straight from a file: NaN where missing, trailing padding still in place.

    `series_at(i)` names series i in the file (e.g. "row 5") and `cell_at(i, t)` its step t (e.g.
    "row 5, column 7"), both 1-based, for error messages.
    """

    series: list[np.ndarray]
    labels: list[int] | None
    series_at: Callable[[int], str]
    cell_at: Callable[[int, int], str]
    notes: list[str] = field(default_factory=list)


def _missing_steps(values: np.ndarray) -> np.ndarray:
    return np.isnan(values).reshape(len(values), -1).any(axis=1)


def _interpolate(values: np.ndarray) -> np.ndarray:
    steps = np.arange(len(values))
    filled = values.copy()
    for feature in range(values.shape[1]):
        known = ~np.isnan(values[:, feature])
        filled[:, feature] = np.interp(steps, steps[known], values[known, feature])
    return filled


def _plural(count: int, word: str) -> str:
    # "series" is its own plural.
    return f"{count} {word}" + ("" if count == 1 or word.endswith("s") else "s")


def resolve_missing(raw: RawSeries, policy: MissingPolicy, source: str) -> SequenceSet:
    """Trim trailing padding, then refuse or interpolate the missing values left (module docstring)."""
    trimmed: list[np.ndarray] = []
    gaps: list[tuple[int, int]] = []  # (series, step) of each missing value inside a series
    shortened = 0
    for index, values in enumerate(raw.series):
        missing = _missing_steps(values)
        if missing.all():
            raise ValueError(f"{source}: {raw.series_at(index)} holds no values")
        end = len(values) - int(np.argmax(~missing[::-1]))
        shortened += end < len(values)
        trimmed.append(values[:end])
        gaps.extend((index, int(step)) for step in np.flatnonzero(missing[:end]))
    notes = list(raw.notes)
    if shortened:
        notes.append(f"{_plural(shortened, 'series')} end early (trailing missing values)")
    if not gaps:
        return SequenceSet(trimmed, raw.labels, notes)
    if policy == "refuse":
        more = f" (and {len(gaps) - 1} more)" if len(gaps) > 1 else ""
        raise ValueError(
            f'{source}: missing value at {raw.cell_at(*gaps[0])}{more}; set data.missing = "interpolate" '
            "to fill missing values linearly within each series, or fix the file"
        )
    touched = sorted({index for index, _ in gaps})
    for index in touched:
        trimmed[index] = _interpolate(trimmed[index])
    notes.append(f"{_plural(len(gaps), 'missing value')} interpolated in {_plural(len(touched), 'series')}")
    return SequenceSet(trimmed, raw.labels, notes)


def describe(data: SequenceSet, source: str) -> str:
    """The one-line summary: "read N series, lengths a..b, from FILE", then the notes."""
    lengths = [len(s) for s in data.series]
    line = f"read {_plural(len(lengths), 'series')}, lengths {min(lengths)}..{max(lengths)}, from {source}"
    return "; ".join([line, *data.notes])
