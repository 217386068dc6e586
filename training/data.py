"""Datasets: image folders and sequence files, each with a fixed validation split.

Every dataset item is a dict: images give `input` and `target` (equal unless noise is added to
the input for denoising); sequences give `input` (T, F). `collate` pads sequences and adds
`lengths`.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import Tensor
from torch.utils.data import Dataset

from service.codecs.sequence import normalize
from service.manifest import DataCounts, DataRecord, FileSplit, SeededSplit, SequenceNormalization, sha256_of
from service.manifest_upgrade import dataset_name
from training.config import ImageDataConfig, SequenceDataConfig, SyntheticDataConfig
from training.sequence_files import read_sequences
from training.series_values import SequenceSet, describe

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}


# ---------------------------------------------------------------- images


def image_files(folder: Path) -> list[Path]:
    """Image files under a folder (recursively), sorted by name so splits are reproducible."""
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {folder}")
    return files


def split_files(files: list[Path], val_every: int) -> tuple[list[Path], list[Path]]:
    """Every `val_every`-th file (by sorted name) is validation; the rest is training."""
    val = files[::val_every]
    held = set(val)
    return [f for f in files if f not in held], val


def load_image(path: Path, channels: int) -> np.ndarray:
    """uint8 (C, H, W) with EXIF orientation applied."""
    with Image.open(path) as opened:
        image = ImageOps.exif_transpose(opened).convert("L" if channels == 1 else "RGB")
        array = np.asarray(image, dtype=np.uint8)
    return array[None] if channels == 1 else array.transpose(2, 0, 1).copy()


def _converted_modes(files: list[Path], channels: int) -> str:
    """What the summary line adds about images not in the run's mode ("" when none is), from their headers."""
    target = "L" if channels == 1 else "RGB"
    modes: dict[str, int] = {}
    for file in files:
        with Image.open(file) as opened:  # the header only
            if opened.mode != target:
                modes[opened.mode] = modes.get(opened.mode, 0) + 1
    if not modes:
        return ""
    detail = ", ".join(f"{mode}: {n}" for mode, n in sorted(modes.items()))
    return f", {sum(modes.values())} converted to {'gray' if channels == 1 else 'RGB'} ({detail})"


class ImageFolderDataset(Dataset[dict[str, Tensor]]):
    """Random crops and flips for training (centre crops without `augment`); fixed seeded crops for validation."""

    def __init__(self, files: list[Path], config: ImageDataConfig, train: bool, seed: int = 0) -> None:
        self.images = [load_image(f, config.channels) for f in files]
        self.config = config
        self.train = train
        self.seed = seed
        self.items = len(self.images) * (1 if train else config.val_crops_per_image)
        self.draws = 0

    def __len__(self) -> int:
        return self.items

    def _crop(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        size = self.config.crop_size
        _, h, w = image.shape
        if h < size or w < size:
            raise ValueError(f"image of {h}x{w} is smaller than crop_size {size}")
        if self.train and not self.config.augment:
            top, left = (h - size) // 2, (w - size) // 2
            return np.ascontiguousarray(image[:, top : top + size, left : left + size])
        top, left = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
        crop = image[:, top : top + size, left : left + size]
        if self.train and rng.random() < 0.5:
            crop = crop[:, :, ::-1]
        if self.train and rng.random() < 0.5:
            crop = crop[:, ::-1, :]
        return np.ascontiguousarray(crop)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        # Validation items are a pure function of (seed, index): the same crops and noise every time.
        # Training draws are seeded too (seed, index, draw count), so a seeded run is repeatable.
        self.draws += 1
        key = (self.seed, index, self.draws) if self.train else (self.seed, index)
        rng = np.random.default_rng(key)
        image = self.images[index % len(self.images)]
        target = torch.from_numpy(self._crop(image, rng)).float() / 255.0
        low, high = self.config.noise_sigma
        if high <= 0:
            return {"input": target, "target": target}
        sigma = rng.uniform(low, high) / 255.0
        noise = torch.from_numpy(rng.standard_normal(target.shape).astype(np.float32)) * sigma
        noisy = target + noise
        if self.config.quantize_noisy:
            noisy = torch.round(noisy.clamp(0.0, 1.0) * 255.0) / 255.0
        return {"input": noisy, "target": target}


def image_folder_sha256(folder: Path) -> str:
    """The content hash of an image folder as training reads it (see `DataRecord.sha256`)."""
    digest = hashlib.sha256()
    for path in image_files(folder):
        digest.update(f"{path.relative_to(folder).as_posix()} {sha256_of(path)}\n".encode())
    return digest.hexdigest()


# ---------------------------------------------------------------- sequences


def split_indices(count: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded permutation cut into (train, val) index arrays."""
    order = np.random.default_rng(seed).permutation(count)
    n_val = max(1, round(count * val_fraction))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def select_classes(data: SequenceSet, classes: list[int] | None) -> SequenceSet:
    """Keep only series whose label is in `classes` (all when None)."""
    if classes is None:
        return data
    if data.labels is None:
        raise ValueError("filtering by class needs a labelled file (UCR or JSON Lines with labels)")
    keep = [i for i, label in enumerate(data.labels) if label in classes]
    if not keep:
        raise ValueError(f"no series has a label in classes {classes}; the file's labels: {sorted(set(data.labels))}")
    return SequenceSet([data.series[i] for i in keep], [data.labels[i] for i in keep], data.notes)


def normalization_spec(train: list[np.ndarray], kind: str) -> SequenceNormalization:
    """The manifest's normalisation; dataset statistics come from the training split only."""
    if kind != "dataset":
        return SequenceNormalization(kind=kind)  # type: ignore[arg-type]
    steps = np.concatenate(train, axis=0)
    return SequenceNormalization(kind="dataset", mean=steps.mean(0).tolist(), std=steps.std(0).tolist())


class SequenceDataset(Dataset[dict[str, Tensor]]):
    """Normalised series; training may draw random windows to teach variable lengths."""

    def __init__(
        self, series: list[np.ndarray], spec: SequenceNormalization, crop_min_length: int | None = None
    ) -> None:
        self.series = [normalize(s, spec)[0] for s in series]
        self.crop_min_length = crop_min_length

    def __len__(self) -> int:
        return len(self.series)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        series = self.series[index]
        if self.crop_min_length and len(series) > self.crop_min_length:
            length = np.random.randint(self.crop_min_length, len(series) + 1)
            start = np.random.randint(0, len(series) - length + 1)
            series = series[start : start + length]
        return {"input": torch.from_numpy(np.ascontiguousarray(series))}


def collate(items: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    """Stack images; pad sequences to the longest and add their `lengths`."""
    first = items[0]["input"]
    if first.dim() == 3:
        return {key: torch.stack([item[key] for item in items]) for key in items[0]}
    # Pairs of views (the synthetic kind): all first views, then all second views, in one batch.
    series = [item["input"] for item in items] + [item["positive"] for item in items if "positive" in item]
    lengths = torch.tensor([len(s) for s in series], dtype=torch.long)
    padded = torch.nn.utils.rnn.pad_sequence(series, batch_first=True)
    batch = {"input": padded, "target": padded, "lengths": lengths}
    return batch | ({"pairs": torch.tensor(len(items))} if len(series) > len(items) else {})


def _image_record(path: Path, config: ImageDataConfig, train: int, val: int) -> DataRecord:
    return DataRecord(
        dataset=dataset_name(path.as_posix(), is_file=False),
        split=FileSplit(val_every=config.val_every),
        counts=DataCounts(unit="images", train=train, val=val),
        sha256=image_folder_sha256(path),
    )


def _sequence_record(path: Path, config: SequenceDataConfig, train: int, val: int) -> DataRecord:
    split = SeededSplit(
        file=path.name, classes=config.classes, val_fraction=config.val_fraction, seed=config.split_seed
    )
    return DataRecord(
        dataset=dataset_name(path.as_posix(), is_file=True),
        split=split,
        counts=DataCounts(unit="series", train=train, val=val),
        sha256=sha256_of(path),
    )


def print_to_stderr(line: str) -> None:
    """The default `report` of `build_datasets`: stdout is kept for the CLI's JSON answer."""
    print(line, file=sys.stderr)


def _data_path(config: ImageDataConfig | SequenceDataConfig | SyntheticDataConfig, root: Path) -> Path:
    return (root / config.path) if not Path(config.path).is_absolute() else Path(config.path)


def read_configured_sequences(config: SequenceDataConfig, path: Path) -> tuple[SequenceSet, str]:
    """The series a sequence data config names (file, layout, missing values, classes) and a summary line."""
    data = read_sequences(
        path, config.format, layout=config.layout, timestamp_column=config.timestamp_column, missing=config.missing
    )
    summary = describe(data, str(path))
    if config.classes is None:
        return data, summary
    kept = select_classes(data, config.classes)
    return kept, f"{summary}; kept {len(kept.series)} with labels in classes {config.classes}"


def build_datasets(
    config: ImageDataConfig | SequenceDataConfig | SyntheticDataConfig,
    root: Path,
    seed: int,
    report: Callable[[str], None] = print_to_stderr,
) -> tuple[Dataset[dict[str, Tensor]], Dataset[dict[str, Tensor]], dict[str, object]]:
    """(train, val, info) for a data config; `info` goes into the manifest.

    `info["record"]` is the manifest's `DataRecord` (data set name, split, counts, content hash; no
    path); sequences add what the manifest's input spec needs (normalisation, features, max length).
    `report` gets one line saying what was read (counts, lengths, anything dropped or filled).
    """
    path = _data_path(config, root)
    if isinstance(config, SyntheticDataConfig):
        from training.corpus import build_synthetic_datasets

        return build_synthetic_datasets(config, path, seed, report)
    if isinstance(config, ImageDataConfig):
        train_files, val_files = split_files(image_files(path), config.val_every)
        count = len(train_files) + len(val_files)
        converted = _converted_modes(train_files + val_files, config.channels)
        report(f"read {count} images from {path}{converted}; {len(train_files)} train / {len(val_files)} val")
        record = _image_record(path, config, len(train_files), len(val_files))
        return (
            ImageFolderDataset(train_files, config, train=True, seed=seed),
            ImageFolderDataset(val_files, config, train=False, seed=seed),
            {"record": record.model_dump(mode="json")},
        )
    data, summary = read_configured_sequences(config, path)
    train_idx, val_idx = split_indices(len(data.series), config.val_fraction, config.split_seed)
    report(f"{summary}; {len(train_idx)} train / {len(val_idx)} val")
    train = [data.series[i] for i in train_idx]
    spec = normalization_spec(train, config.normalization)
    info = {
        "record": _sequence_record(path, config, len(train), len(val_idx)).model_dump(mode="json"),
        "features": int(train[0].shape[1]),
        "normalization": spec.model_dump(),
        "max_length": max(len(s) for s in data.series),
    }
    return (
        SequenceDataset(train, spec, config.crop_min_length),
        SequenceDataset([data.series[i] for i in val_idx], spec),
        info,
    )
