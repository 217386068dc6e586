"""Sequence files: UCR text (label first), CSV (`series_csv`), NPY and JSON Lines.

Every reader keeps missing values as NaN and knows where each value sat in the file; one policy
(`series_values.resolve_missing`) then decides for all formats: trailing gaps end a series early,
other gaps are refused with their place in the file or interpolated when asked.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from training.series_csv import Layout, read_csv_series
from training.series_values import MissingPolicy, RawSeries, SequenceSet, parse_number, resolve_missing

FORMATS = ("ucr", "csv", "npy", "jsonl")


def _ucr_row(line: str, number: int, source: str) -> list[float]:
    values = []
    for column, cell in enumerate(line.replace(",", " ").split(), start=1):
        value = parse_number(cell)
        if value is None:
            raise ValueError(f"{source}: line {number}, column {column}: {cell!r} is not a number")
        values.append(value)
    if not np.isfinite(values[0]):
        raise ValueError(f"{source}: line {number}, column 1: the label is missing")
    return values


def _read_ucr(path: Path, source: str) -> RawSeries:
    numbered = [(n, line) for n, line in enumerate(path.read_text().splitlines(), start=1) if line.strip()]
    rows = [_ucr_row(line, n, source) for n, line in numbered]
    numbers = [n for n, _ in numbered]
    return RawSeries(
        [np.asarray(r[1:])[:, None] for r in rows],
        [round(r[0]) for r in rows],
        series_at=lambda i: f"line {numbers[i]}",
        cell_at=lambda i, t: f"line {numbers[i]}, column {t + 2}",  # column 1 is the label
    )


def _read_npy(path: Path, source: str) -> RawSeries:
    array = np.load(path, allow_pickle=False).astype(np.float64)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3:
        raise ValueError(f"{source}: expected (N, T) or (N, T, F), got shape {array.shape}")
    return RawSeries(
        list(array),
        None,
        series_at=lambda i: f"series {i + 1}",
        cell_at=lambda i, t: f"series {i + 1}, step {t + 1}",
    )


def _floats(values: Any) -> np.ndarray:
    """JSON numbers as floats; `null` is a missing value."""
    array = np.asarray(values, dtype=object)
    return np.vectorize(lambda v: np.nan if v is None else float(v), otypes=[np.float64])(array)


def _read_jsonl(path: Path, source: str) -> RawSeries:
    series: list[np.ndarray] = []
    labels: list[Any] = []
    numbers: list[int] = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        record = json.loads(line)
        array = _floats(record["values"] if isinstance(record, dict) else record)
        series.append(array[:, None] if array.ndim == 1 else array)
        labels.append(record.get("label") if isinstance(record, dict) else None)
        numbers.append(number)
    has_labels = bool(labels) and all(label is not None for label in labels)
    return RawSeries(
        series,
        [int(label) for label in labels] if has_labels else None,
        series_at=lambda i: f"line {numbers[i]}",
        cell_at=lambda i, t: f"line {numbers[i]}, step {t + 1}",
    )


def format_of(path: Path, fmt: str = "auto") -> str:
    """`auto` picks the reader by suffix: .npy, .jsonl, .csv; anything else is UCR text."""
    if fmt != "auto":
        return fmt
    return {".npy": "npy", ".jsonl": "jsonl", ".csv": "csv"}.get(path.suffix.lower(), "ucr")


def read_sequences(
    path: Path,
    fmt: str = "auto",
    *,
    layout: Layout = "rows",
    timestamp_column: str | int | None = None,
    missing: MissingPolicy = "refuse",
) -> SequenceSet:
    """Read a sequence file; `layout` and `timestamp_column` apply to CSV files only."""
    fmt, source = format_of(path, fmt), str(path)
    if fmt != "csv" and (layout != "rows" or timestamp_column is not None):
        raise ValueError(f"{source}: data.layout and data.timestamp_column apply to CSV files, not {fmt}")
    if fmt == "csv":
        raw = read_csv_series(path, layout, timestamp_column, source)
    elif fmt in FORMATS:
        raw = {"ucr": _read_ucr, "npy": _read_npy, "jsonl": _read_jsonl}[fmt](path, source)
    else:
        raise ValueError(f"unknown sequence format {fmt!r}; known: auto, {', '.join(FORMATS)}")
    if not raw.series:
        raise ValueError(f"{source} holds no series")
    return resolve_missing(raw, missing, source)
