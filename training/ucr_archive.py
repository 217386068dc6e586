"""UCR/UEA classification sets in the `.ts` format, read from the copies `aeon` ships as package data.

Only the files are read: `aeon` is located without being imported (its import pulls numba, which the
pinned numpy excludes), so `pip install --no-deps aeon` is enough. Equal-length sets only; a
multivariate set's dimensions are separated by `:` in each row, the label comes last.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np


def aeon_data_folder() -> Path:
    """`aeon/datasets/data` of the installed aeon package."""
    spec = importlib.util.find_spec("aeon")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the UCR sets come from aeon's package data: pip install --no-deps aeon")
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"


def read_ts(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(series (N, D, T) float64, labels (N,) as strings) of an equal-length `.ts` file."""
    rows, labels = [], []
    in_data = False
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not in_data:
            in_data = line.lower() == "@data"
            continue
        *dims, label = line.split(":")
        rows.append([[float(v) for v in dim.split(",")] for dim in dims])
        labels.append(label.strip())
    if not rows:
        raise ValueError(f"{path}: no @data rows")
    return np.asarray(rows, dtype=np.float64), np.asarray(labels)


def load_split(name: str, split: str, folder: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(series (N, D, T), labels) of a bundled set's `TRAIN` or `TEST` split."""
    base = folder or aeon_data_folder()
    path = base / name / f"{name}_{split.upper()}.ts"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: is {name} one of the sets aeon bundles?")
    return read_ts(path)
