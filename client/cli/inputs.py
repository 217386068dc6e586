"""What the command line reads: files, folders and globs; series from .csv, .npy and .jsonl files."""

from __future__ import annotations

import csv
import glob
import json
from pathlib import Path
from typing import Any

import numpy as np

from client.errors import UnsupportedOptionError

SERIES_SUFFIXES = (".csv", ".npy", ".jsonl")


def expand(arguments: list[str]) -> list[Path]:
    """Every file named: a file as is, a folder's files (recursively, hidden ones left out), a glob's matches.

    Files are taken whatever their suffix: the server decides what a body is, and a file it cannot read
    is reported with its answer rather than skipped in silence. An argument matching nothing is an error.
    """
    found: list[Path] = []
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and not _hidden(p.relative_to(path)))
        elif path.is_file():
            found.append(path)
        elif matches := sorted(glob.glob(argument, recursive=True)):
            found += [Path(match) for match in matches if Path(match).is_file()]
        else:
            raise UnsupportedOptionError(f"{argument}: no such file, folder or matching glob")
    return list(dict.fromkeys(found))


def output_paths(inputs: list[Path], out_dir: Path, suffix: str) -> list[Path]:
    """`out_dir/STEM{suffix}` per input; two inputs that would write the same file are refused up front."""
    outputs = [out_dir / f"{path.stem}{suffix}" for path in inputs]
    seen: dict[Path, Path] = {}
    for source, target in zip(inputs, outputs, strict=True):
        if target in seen:
            raise UnsupportedOptionError(f"{seen[target]} and {source} would both be written to {target}")
        seen[target] = source
    return outputs


def read_series(path: Path) -> list[Any]:
    """The series in a file, each a list of numbers (or of feature vectors).

    .npy: a 1-D array is one series, 2-D rows are series, 3-D is (series, steps, features).
    .csv: one series per row (lengths may differ); a first row that is not numeric is a header.
    .jsonl: one series per line, a JSON list or an object with a `sequence` field.
    """
    if path.suffix == ".npy":
        array = np.load(path, allow_pickle=False)
        return [array.tolist()] if array.ndim == 1 else list(array.tolist())
    if path.suffix == ".csv":
        return _csv_series(path)
    if path.suffix == ".jsonl":
        return [_json_series(line, path, number) for number, line in _lines(path)]
    raise ValueError(f"{path.suffix or 'no suffix'}: series files are {', '.join(SERIES_SUFFIXES)}")


def _csv_series(path: Path) -> list[list[float]]:
    with path.open(newline="") as handle:
        rows = [row for row in csv.reader(handle) if any(cell.strip() for cell in row)]
    if rows and not _numeric(rows[0]):
        rows = rows[1:]
    try:
        return [[float(cell) for cell in row if cell.strip()] for row in rows]
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from error


def _json_series(line: str, path: Path, number: int) -> Any:
    value = json.loads(line)
    if isinstance(value, dict):
        value = value.get("sequence")
    if not isinstance(value, list):
        raise ValueError(f"{path}:{number}: each line must be a JSON list or an object with a `sequence` list")
    return value


def _lines(path: Path) -> list[tuple[int, str]]:
    lines = path.read_text().splitlines()
    return [(number, line) for number, line in enumerate(lines, 1) if line.strip()]


def _numeric(row: list[str]) -> bool:
    try:
        [float(cell) for cell in row if cell.strip()]
    except ValueError:
        return False
    return True


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)
