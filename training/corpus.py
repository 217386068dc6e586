"""The `synthetic` data kind: a generated corpus plus a series file's training part, as pairs of views.

Every item is two augmented views of one z-normalised series (`input` and `positive`), for a
contrastive loss beside reconstruction; `collate` stacks all first views, then all second views.
A view is a random window, resampled to another length, time-warped, with Gaussian jitter, and
z-normalised again (as the service normalises what it is sent).

Splits of the file: `val_fraction` / `split_seed` hold out the evaluation part exactly as a
`sequence` data config does (`training.data.split_indices`); of the rest, `file_val_fraction` is
validation (checkpoint choice) and the remainder is trained on, `file_repeats` times per pass.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from service.codecs.sequence import normalize
from service.manifest import DataCounts, DataRecord, SeededSplit, SequenceNormalization, sha256_of
from service.manifest_upgrade import dataset_name
from training.config import SyntheticDataConfig
from training.sequence_files import read_sequences
from training.synthetic import generate_corpus, time_warp

PER_SERIES = SequenceNormalization(kind="per_series")


def _znorm(series: np.ndarray) -> np.ndarray:
    return normalize(series.reshape(-1, 1).astype(np.float64), PER_SERIES)[0]


def augment(series: np.ndarray, config: SyntheticDataConfig, rng: np.random.Generator) -> np.ndarray:
    """One view (T', 1) of a 1-D series: window, resample, warp, jitter, z-normalise."""
    n = len(series)
    keep = max(2, round(n * rng.uniform(config.crop_min, 1.0)))
    start = int(rng.integers(0, n - keep + 1))
    view = series[start : start + keep]
    if config.resample > 0:
        target = max(2, round(keep * rng.uniform(1 - config.resample, 1 + config.resample)))
        view = np.interp(np.linspace(0, keep - 1, target), np.arange(keep), view)
    view = time_warp(rng, view, config.warp)
    view = view + rng.uniform(0.0, config.jitter) * rng.standard_normal(len(view))
    return _znorm(view)


class ViewPairDataset(Dataset[dict[str, Tensor]]):
    """Two augmented views of each series; validation views are a pure function of (seed, index)."""

    def __init__(self, series: list[np.ndarray], config: SyntheticDataConfig, train: bool, seed: int) -> None:
        self.series = [_znorm(s)[:, 0].astype(np.float64) for s in series]
        self.config = config
        self.train = train
        self.seed = seed
        self.draws = 0

    def __len__(self) -> int:
        return len(self.series)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        self.draws += 1
        key = (self.seed, index, self.draws) if self.train else (self.seed, index)
        rng = np.random.default_rng(key)
        series = self.series[index]
        first, second = augment(series, self.config, rng), augment(series, self.config, rng)
        return {"input": torch.from_numpy(first), "positive": torch.from_numpy(second)}


def _file_splits(count: int, config: SyntheticDataConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, val, held-out evaluation) indices of the file's series."""
    from training.data import split_indices  # training.data imports this module

    rest, held_out = split_indices(count, config.val_fraction, config.split_seed)
    if config.file_val_fraction == 0:
        return rest, rest[:0], held_out
    order = np.random.default_rng(config.split_seed + 1).permutation(len(rest))
    n_val = max(1, round(len(rest) * config.file_val_fraction))
    return np.sort(rest[order[n_val:]]), np.sort(rest[order[:n_val]]), held_out


def build_synthetic_datasets(
    config: SyntheticDataConfig, path: Path, seed: int, report: Callable[[str], None]
) -> tuple[ViewPairDataset, ViewPairDataset, dict[str, object]]:
    """(train, val, info) of a `synthetic` data config; `info` as `training.data.build_datasets` gives it."""
    data = read_sequences(path)
    univariate = [s[:, 0] for s in data.series if s.shape[1] == 1]
    if len(univariate) != len(data.series):
        raise ValueError(f"{path}: the synthetic data kind mixes in univariate series only")
    train_idx, val_idx, held_out = _file_splits(len(univariate), config)
    corpus = generate_corpus(config.series, config.min_length, config.max_length, config.corpus_seed)
    val_corpus = generate_corpus(config.val_series, config.min_length, config.max_length, config.corpus_seed + 1)
    train = corpus + [univariate[i] for i in train_idx] * config.file_repeats
    val = val_corpus + [univariate[i] for i in val_idx]
    report(
        f"{len(corpus)} synthetic + {len(train_idx)} x {config.file_repeats} series of {path} for training; "
        f"{len(val_corpus)} synthetic + {len(val_idx)} of the file for validation; "
        f"{len(held_out)} of the file held out (never trained on)"
    )
    split = SeededSplit(file=path.name, val_fraction=config.val_fraction, seed=config.split_seed)
    record = DataRecord(
        dataset=dataset_name(path.as_posix(), is_file=True),
        split=split,
        counts=DataCounts(unit="series", train=len(train_idx) + len(val_idx), val=len(held_out)),
        sha256=sha256_of(path),
    )
    info = {
        "record": record.model_dump(mode="json"),
        "features": 1,
        "normalization": PER_SERIES.model_dump(),
        "max_length": max(config.max_length, *(len(s) for s in univariate)),
    }
    return ViewPairDataset(train, config, True, seed), ViewPairDataset(val, config, False, seed), info
