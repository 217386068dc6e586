"""CSV files of series, in one of two layouts (`data.layout`).

- `rows` (the default): each row is one series; its cells are the time steps.
- `columns`: each column is one series (one per sensor, say); each row is a time step.
  `timestamp_column` (a header name, or a 1-based column number) is left out of the series. Its
  values are not parsed: rows are taken as they stand, in time order and evenly spaced.

The first row is a header only when one of its cells (the timestamp column aside) is text that is
neither a number nor a missing marker. No other row is ever skipped: a non-numeric cell further
down is an error naming its row and column. Blank lines hold no cells and are passed over.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Literal

import numpy as np

from training.series_values import RawSeries, parse_number

Layout = Literal["rows", "columns"]
NumberedRow = tuple[int, list[str]]


def _rows(path: Path) -> list[NumberedRow]:
    """(1-based line number, cells) of every line that holds a cell."""
    reader = csv.reader(io.StringIO(path.read_text(), newline=""))
    return [(number, row) for number, row in enumerate(reader, start=1) if len(row) > 1 or (row and row[0].strip())]


def _number(cell: str, where: str, source: str, hint: str) -> float:
    value = parse_number(cell)
    if value is None:
        raise ValueError(f"{source}: {where}: {cell.strip()!r} is not a number{hint}")
    return value


def _split_header(rows: list[NumberedRow], timestamp: str | int | None) -> tuple[list[str] | None, list[NumberedRow]]:
    skip = timestamp - 1 if isinstance(timestamp, int) else None
    first = rows[0][1]
    if any(parse_number(cell) is None for index, cell in enumerate(first) if index != skip):
        return [cell.strip() for cell in first], rows[1:]
    return None, rows


def _timestamp_index(header: list[str] | None, timestamp: str | int | None, source: str) -> int | None:
    """The 0-based index of the timestamp column, checked against the file."""
    if timestamp is None or isinstance(timestamp, int):
        return None if timestamp is None else timestamp - 1
    if header is None:
        raise ValueError(
            f"{source}: timestamp_column {timestamp!r} names a header cell, but the file has no header row"
        )
    if timestamp not in header:
        raise ValueError(f"{source}: timestamp_column {timestamp!r} is not in the header ({', '.join(header)})")
    return header.index(timestamp)


def _header_note(header: list[str]) -> str:
    shown = ", ".join(header[:4]) + (", ..." if len(header) > 4 else "")
    return f"first row taken as header ({shown})"


def _by_rows(rows: list[NumberedRow], source: str) -> RawSeries:
    hint = (
        '; if each column is one series (and this one holds timestamps), set data.layout = "columns" '
        "and data.timestamp_column"
    )
    series = [
        np.array([_number(cell, f"row {n}, column {c}", source, hint) for c, cell in enumerate(row, 1)])[:, None]
        for n, row in rows
    ]
    numbers = [n for n, _ in rows]
    return RawSeries(
        series,
        None,
        series_at=lambda i: f"row {numbers[i]}",
        cell_at=lambda i, t: f"row {numbers[i]}, column {t + 1}",
    )


def _by_columns(rows: list[NumberedRow], header: list[str] | None, stamp: int | None, source: str) -> RawSeries:
    width = len(header) if header else max(len(row) for _, row in rows)
    if stamp is not None and not 0 <= stamp < width:
        raise ValueError(f"{source}: timestamp_column {stamp + 1} is outside the file's {width} columns")
    columns = [c for c in range(width) if c != stamp]

    def series_at(i: int) -> str:
        return f"column {columns[i] + 1}" + (f" ({header[columns[i]]!r})" if header else "")

    grid = np.full((len(rows), len(columns)), np.nan)
    for t, (n, row) in enumerate(rows):
        if len(row) > width:
            raise ValueError(f"{source}: row {n} has {len(row)} cells, the header {width}")
        for i, c in enumerate(columns):
            # A short row leaves its last columns missing, exactly as empty cells would.
            grid[t, i] = _number(row[c], f"row {n}, {series_at(i)}", source, "") if c < len(row) else np.nan
    numbers = [n for n, _ in rows]
    return RawSeries(
        [grid[:, i, None] for i in range(len(columns))],
        None,
        series_at=series_at,
        cell_at=lambda i, t: f"row {numbers[t]}, {series_at(i)}",
    )


def read_csv_series(path: Path, layout: Layout, timestamp: str | int | None, source: str) -> RawSeries:
    """Series from a CSV file in `layout` (module docstring); missing values are NaN, not yet resolved."""
    if timestamp is not None and layout != "columns":
        raise ValueError(f'{source}: timestamp_column needs data.layout = "columns" (each column one series)')
    rows = _rows(path)
    if not rows:
        return RawSeries([], None, series_at=str, cell_at=lambda i, t: "")
    header, data_rows = _split_header(rows, timestamp)
    stamp = _timestamp_index(header, timestamp, source)
    if not data_rows:
        raise ValueError(f"{source}: only a header row, no values")
    raw = _by_rows(data_rows, source) if layout == "rows" else _by_columns(data_rows, header, stamp, source)
    # Said every time: a file of one column per sensor read by rows is well-formed but wrong.
    raw.notes.append('one series per row (data.layout = "rows")' if layout == "rows" else "one series per column")
    if header:
        raw.notes.append(_header_note(header))
    if stamp is not None:
        raw.notes.append(f"column {stamp + 1} left out as timestamps")
    return raw
