"""Typed configs for a training run, loaded from TOML and overridden by `--set` flags.

A run config has three sections: `[model]` (its `family` picks the model config class from the
registry), `[data]` and `[optim]`. Every value has a default so a config file only states what
differs.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from training.registry import families, model_config_class


@dataclass
class ImageDataConfig:
    """Image folders, random crops and flips, optional input-only Gaussian noise.

    The string under each field is its one-line meaning, printed by `ae-train fit --print-config`.
    """

    kind: Literal["image"] = "image"
    """Data kind: image folders."""
    path: str = "../shared/datasets/images/bsds400"
    """Image folder (searched recursively); relative paths resolve against --data-root."""
    channels: Literal[1, 3] = 3
    """Channels the images are converted to: 1 (gray) or 3 (RGB)."""
    crop_size: int = 64
    """Side of the square random crops trained on, in pixels."""
    # Off makes every training item a pure function of its index, as comparing runs needs.
    augment: bool = True
    """Random crops and flips for training; false takes each image's centre crop, unflipped."""
    # A fixed split that does not depend on seeds.
    val_every: int = 10
    """Every val_every-th file by sorted name is held out for validation."""
    noise_sigma: tuple[float, float] = (0.0, 0.0)
    """Range of Gaussian noise sigma (0..255 units) added to the input only, for denoising; [0, 0] adds none."""
    # Near black and white the clipped noise is no longer zero-mean, and a model trained on unclipped
    # noise over-corrects there (0.33 dB lost at sigma 25 on the held-out photos for v1).
    quantize_noisy: bool = False
    """Clip the noisy input to 0..1 and round it to 8 bits, as a saved noisy photo is."""
    val_crops_per_image: int = 2
    """Fixed seeded crops taken from each validation image."""


@dataclass
class SequenceDataConfig:
    """Sequence files (UCR text, CSV, NPY, JSON Lines), normalisation and a seeded split.

    The string under each field is its one-line meaning, printed by `ae-train fit --print-config`.
    """

    kind: Literal["sequence"] = "sequence"
    """Data kind: a file of series."""
    path: str = "../shared/datasets/sequences/ecg5000/ECG5000_TRAIN.txt"
    """Series file; relative paths resolve against --data-root."""
    format: Literal["auto", "ucr", "csv", "npy", "jsonl"] = "auto"
    """File format; auto picks it by suffix (.csv, .npy, .jsonl; anything else is UCR text, label first)."""
    layout: Literal["rows", "columns"] = "rows"
    """CSV only: rows = one series per row; columns = one series per column, rows are time steps."""
    timestamp_column: str | int | None = None
    """CSV columns layout only: the header name (or 1-based number) of a timestamp column to leave out."""
    # Trailing missing values only end a series early (variable lengths); this is about the others.
    missing: Literal["refuse", "interpolate"] = "refuse"
    """Missing values (empty, NA, NaN, null) inside a series: refuse naming row and column, or interpolate linearly."""
    normalization: Literal["none", "per_series", "dataset"] = "per_series"
    """Scaling: none, per_series (each series to mean 0, std 1) or dataset (training split's statistics)."""
    # E.g. [1] for normal beats when training an anomaly model.
    classes: list[int] | None = None
    """Keep only series with these labels (labelled files only); all when unset."""
    val_fraction: float = 0.2
    """Fraction of the series held out for validation."""
    split_seed: int = 0
    """Seed of the permutation that splits series into training and validation."""
    crop_min_length: int | None = None
    """Train on random contiguous windows at least this long, to teach variable lengths; whole series when unset."""

    def __post_init__(self) -> None:
        if self.layout not in ("rows", "columns"):
            raise ValueError(f'data.layout must be "rows" or "columns", got {self.layout!r}')
        if self.missing not in ("refuse", "interpolate"):
            raise ValueError(f'data.missing must be "refuse" or "interpolate", got {self.missing!r}')
        if self.timestamp_column is not None and self.layout != "columns":
            raise ValueError('data.timestamp_column needs data.layout = "columns" (each column one series)')
        if isinstance(self.timestamp_column, int) and self.timestamp_column < 1:
            raise ValueError("data.timestamp_column as a number counts columns from 1")


@dataclass
class SyntheticDataConfig:
    """A seeded synthetic corpus (see training/synthetic.py) mixed with the training part of a series file.

    Items are pairs of augmented views of one series (for a contrastive loss). `val_fraction` and
    `split_seed` hold out part of the file exactly as a `sequence` config does; that part is never
    trained on nor used to pick checkpoints (it is the evaluation set). Checkpoints are picked on
    `val_series` further synthetic series and `file_val_fraction` of the file's remaining series.
    The string under each field is its one-line meaning, printed by `ae-train fit --print-config`.
    """

    kind: Literal["synthetic"] = "synthetic"
    """Data kind: a synthetic corpus plus a series file."""
    path: str = "../shared/datasets/sequences/ecg5000/ECG5000_TRAIN.txt"
    """Series file mixed in; relative paths resolve against --data-root."""
    val_fraction: float = 0.2
    """Fraction of the file held out (never trained on: the evaluation set)."""
    split_seed: int = 0
    """Seed of the permutation that holds that part of the file out."""
    file_val_fraction: float = 0.1
    """Fraction of the file's remaining series used for validation (checkpoint choice)."""
    file_repeats: int = 8
    """Times each training series of the file appears per pass, beside the synthetic corpus."""
    series: int = 20000
    """Synthetic training series (the corpus is generated once, from the seed)."""
    val_series: int = 1000
    """Synthetic validation series (generated from another seed)."""
    corpus_seed: int = 0
    """Seed of the synthetic corpus; the validation corpus uses corpus_seed + 1."""
    min_length: int = 16
    """Shortest synthetic series."""
    max_length: int = 256
    """Longest synthetic series (lengths are log-uniform in between)."""
    crop_min: float = 0.8
    """Views keep a random window of at least this fraction of the series."""
    resample: float = 0.25
    """Views are resampled to a length factor in [1 - resample, 1 + resample] (0: never)."""
    warp: float = 0.2
    """Strength of the random time warp of a view (0: none)."""
    jitter: float = 0.1
    """Largest standard deviation of the Gaussian noise added to a view (z-normalised units)."""

    def __post_init__(self) -> None:
        if not 0 < self.val_fraction < 1 or not 0 <= self.file_val_fraction < 1:
            raise ValueError("data.val_fraction must be in (0, 1) and data.file_val_fraction in [0, 1)")
        if not 2 <= self.min_length <= self.max_length:
            raise ValueError("data.min_length must be at least 2 and at most data.max_length")
        if not 0 < self.crop_min <= 1 or not 0 <= self.resample < 1:
            raise ValueError("data.crop_min must be in (0, 1] and data.resample in [0, 1)")


@dataclass
class OptimConfig:
    """Optimisation, schedule, logging and checkpoint cadence.

    The string under each field is its one-line meaning, printed by `ae-train fit --print-config`.
    """

    steps: int = 2000
    """Optimizer steps the run takes (unless time_budget_s ends it first)."""
    batch_size: int = 16
    """Crops or series per step and process; under torchrun a step sees batch_size x world size."""
    lr: float = 1e-3
    """Peak AdamW learning rate."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    min_lr_ratio: float = 0.05
    """Cosine decay ends at lr * min_lr_ratio, over steps or the time budget, whichever ends first."""
    # GDN transforms can blow up under a cold full-size step.
    warmup_steps: int = 0
    """Linear learning-rate warm-up from 0 over this many first steps."""
    grad_clip: float = 1.0
    """Gradient norm clipping threshold."""
    val_every: int = 200
    """Validate (and keep best.pt) every this many steps."""
    checkpoint_every: int = 500
    """Write checkpoint.pt every this many steps."""
    seed: int = 0
    """Seed of Python, NumPy and torch (weights, shuffling, crops, noise)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where to train; auto takes CUDA when present."""
    num_workers: int = 0
    """DataLoader worker processes (0 loads batches in the training process)."""
    shuffle: bool = True
    """Shuffle the training set on every pass (seeded); false reads it in order."""
    # The learning-rate schedule follows whichever of steps and time is further along, so a budgeted
    # run still ends annealed.
    time_budget_s: float | None = None
    """Stop after this many seconds of training even if steps are not done; no limit when unset."""
    # Off keeps fp32/TF32 for models sensitive to rounding.
    mixed_precision: bool = True
    """bf16 autocast on CUDA (never on CPU)."""
    train_only: list[str] = field(default_factory=list)
    """Train only parameters whose names start with one of these (e.g. ["density"]); empty trains all."""

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("steps and batch_size must be at least 1")
        if self.time_budget_s is not None and self.time_budget_s <= 0:
            raise ValueError("time_budget_s must be positive (or left out)")


@dataclass
class RunConfig:
    """A whole training run."""

    model: Any
    data: ImageDataConfig | SequenceDataConfig | SyntheticDataConfig
    optim: OptimConfig = field(default_factory=OptimConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (family included) for checkpoints, manifests and `config.json`."""
        return {
            "model": {"family": family_of(self.model), **dataclasses.asdict(self.model)},
            "data": dataclasses.asdict(self.data),
            "optim": dataclasses.asdict(self.optim),
        }


def family_of(model_config: Any) -> str:
    """Registry name of a model config (each config class declares its `family`)."""
    return str(model_config.family)


def _build(cls: type, values: dict[str, Any]) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys: {', '.join(unknown)}")
    typed = {}
    for f in dataclasses.fields(cls):
        if f.name in values:
            value = values[f.name]
            # TOML and JSON give lists; configs declare tuples for fixed-length pairs.
            typed[f.name] = tuple(value) if isinstance(value, list) and "tuple" in str(f.type) else value
    return cls(**typed)


def config_from_dict(raw: dict[str, Any]) -> RunConfig:
    """Build a RunConfig from nested dicts, rejecting unknown keys (typos must not pass silently)."""
    unknown = sorted(set(raw) - {"model", "data", "optim"})
    if unknown:
        raise ValueError(f"unknown config sections: {', '.join(unknown)}")
    model_raw = dict(raw.get("model", {}))
    family = model_raw.pop("family", None)
    if family is None:
        raise ValueError(f"config [model] needs a `family` (one of: {', '.join(families())})")
    model = _build(model_config_class(family), model_raw)
    data_raw = dict(raw.get("data", {}))
    data_classes: dict[str, type[ImageDataConfig | SequenceDataConfig | SyntheticDataConfig]] = {
        c.kind: c for c in (ImageDataConfig, SequenceDataConfig, SyntheticDataConfig)
    }
    data_cls = data_classes.get(data_raw.get("kind", model.data_kind), ImageDataConfig)
    data_raw.setdefault("kind", data_cls.kind)
    data = _build(data_cls, data_raw)
    optim = _build(OptimConfig, dict(raw.get("optim", {})))
    return RunConfig(model=model, data=data, optim=optim)


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse `section.key=value`; the value is JSON when it parses, else a plain string."""
    if "=" not in text:
        raise ValueError(f"override {text!r} is not of the form section.key=value")
    dotted, _, value_text = text.partition("=")
    keys = dotted.strip().split(".")
    if len(keys) != 2:
        raise ValueError(f"override {text!r}: expected section.key (e.g. optim.steps=100)")
    try:
        value = json.loads(value_text)
    except json.JSONDecodeError:
        value = value_text
    return keys, value


def load_config(path: Path | None, overrides: list[str] | None = None) -> RunConfig:
    """Read a TOML config (or start empty) and apply `section.key=value` overrides."""
    raw: dict[str, Any] = tomllib.loads(path.read_text()) if path else {}
    for text in overrides or []:
        (section, key), value = parse_override(text)
        raw.setdefault(section, {})[key] = value
    return config_from_dict(raw)
