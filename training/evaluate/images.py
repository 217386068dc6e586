"""`ae-train evaluate images`: PSNR of a served image model's reconstructions on held-out photos.

The held-out photos are the training split's validation files (every 10th by sorted name; `--split
all` takes every file, for a folder of other photos), evaluated whole (not cropped), through the
same pipeline the service runs. A model that takes one size only (`input.fixed_size`, a dense
bottleneck) cannot take a whole photo: each photo is then cut into non-overlapping tiles of that
size (the right and bottom remainders left out), every tile is sent as its own PNG request, and
PSNR is measured on the stitched tiles. `tile` does the same for any model, so a fully
convolutional one can be scored on exactly the same pixels.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from service.config import Settings
from service.kinds.codec import psnr
from service.kinds.image import image_reconstruct
from service.manifest import ImageInputSpec
from service.model import LoadedModel
from training.data import image_files, split_files
from training.evaluate.served import evaluation_folder, load_served, scored_versions

_SETTINGS = Settings(max_image_pixels=100_000_000)


def held_out_images(folder: Path, val_every: int) -> list[Path]:
    """The validation files of the fixed image split."""
    return split_files(image_files(folder), val_every)[1]


def select_images(images: Path, split: str) -> list[Path]:
    """`heldout`: the fixed validation files of the training split; `all`: every image in the folder."""
    return held_out_images(images, 10) if split == "heldout" else image_files(images)


def write_report(out: Path, stem: str, rows: list[dict[str, Any]], report: dict[str, Any]) -> None:
    """`stem.csv` with one row per measurement and `stem.json` with the summary."""
    out.mkdir(parents=True, exist_ok=True)
    with (out / f"{stem}.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (out / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")


def png_bytes(pixels: np.ndarray) -> bytes:
    """An (H, W, C) uint8 array as PNG bytes: how the evaluations send pixels to the served pipeline."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def reconstruct_tiled(model: LoadedModel, original: np.ndarray, tile: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(covered part of the photo, its reconstruction), one served request per `tile`-sized tile."""
    th, tw = tile
    rows, cols = original.shape[0] // th, original.shape[1] // tw
    covered = original[: rows * th, : cols * tw]
    answer = np.empty_like(covered)
    for r in range(rows):
        for c in range(cols):
            window = (slice(r * th, (r + 1) * th), slice(c * tw, (c + 1) * tw))
            png = image_reconstruct(model, png_bytes(covered[window]), "image/png", _SETTINGS)
            answer[window] = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    return covered, answer


def run(
    images: Path,
    model_dir: Path,
    out: Path | None = None,
    tile: tuple[int, int] | None = None,
    split: str = "heldout",
) -> dict[str, Any]:
    """Per-image and mean PSNR on the `split` (see `select_images`); writes `images.json`.

    Whole photos, or tiles of `tile` (or of the model's fixed size), one request each.

    `out` defaults to `docs/evaluation/<model>/v<N>/` of the version scored.
    """
    model = load_served(model_dir)
    out = out or evaluation_folder(model.manifest.name, model.manifest.version)
    spec = model.manifest.input
    tile = tile or (spec.fixed_size if isinstance(spec, ImageInputSpec) else None)
    rows = []
    for path in select_images(images, split):
        original = np.asarray(Image.open(path).convert("RGB"))
        if tile is None:
            answer = image_reconstruct(model, path.read_bytes(), "image/png", _SETTINGS)
            reconstruction = np.asarray(Image.open(io.BytesIO(answer)))
        else:
            original, reconstruction = reconstruct_tiled(model, original, tile)
        rows.append({"image": path.name, "psnr_db": round(psnr(original, reconstruction), 3)})
    report = {
        "models": scored_versions(model),
        "model": f"{model.manifest.name}/{model.manifest.version}",
        "images": str(images),
        "split": split,
        "count": len(rows),
        "tile": list(tile) if tile else None,
        "mean_psnr_db": round(float(np.mean([r["psnr_db"] for r in rows])), 3),
        "per_image": rows,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "images.json").write_text(json.dumps(report, indent=2) + "\n")
    return report
