"""`ae-train evaluate images`: PSNR of a served image model's reconstructions on held-out photos.

The held-out photos are the training split's validation files (every `val_every`-th by sorted name),
evaluated whole (not cropped), through the same pipeline the service runs.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from service.compression import psnr
from service.config import Settings
from service.pipelines import image_reconstruct
from training.data import image_files, split_files
from training.evaluate.served import load_served

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


def run(images: Path, model_dir: Path, out: Path, val_every: int = 10) -> dict[str, Any]:
    """Per-image and mean PSNR; writes `images.json`."""
    model = load_served(model_dir)
    rows = []
    for path in held_out_images(images, val_every):
        original = np.asarray(Image.open(path).convert("RGB"))
        answer = image_reconstruct(model, path.read_bytes(), "image/png", _SETTINGS)
        rows.append(
            {"image": path.name, "psnr_db": round(psnr(original, np.asarray(Image.open(io.BytesIO(answer)))), 3)}
        )
    report = {
        "model": f"{model.manifest.name}/{model.manifest.version}",
        "images": str(images),
        "count": len(rows),
        "mean_psnr_db": round(float(np.mean([r["psnr_db"] for r in rows])), 3),
        "per_image": rows,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "images.json").write_text(json.dumps(report, indent=2) + "\n")
    return report
