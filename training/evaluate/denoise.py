"""`ae-train evaluate denoise`: our denoiser against BM3D and non-local means on the same noisy photos.

Noise is seeded per (image, sigma). Every method sees the same noisy image as a user's file would
hold it: clean + N(0, sigma), clipped to 0..255 and rounded to 8 bits. Ours runs through the served
pipeline (PNG in, PNG out). BM3D (the `bm3d` package, its colour variant) takes seconds per photo,
so it runs on the first `bm3d_limit` images; means are reported over that subset too.

`gray`: the same photos converted to gray (luma), gray noise, gray PNGs sent to the service (which runs
a model's gray variant on them, if it has one), BM3D's gray variant; reported under `.../gray/`.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import bm3d
import numpy as np
from PIL import Image
from skimage.metrics import structural_similarity
from skimage.restoration import denoise_nl_means
from tqdm import tqdm

from service.config import Settings
from service.kinds.codec import psnr
from service.kinds.image import image_reconstruct
from service.model import LoadedModel
from training.evaluate.images import png_bytes, select_images, write_report
from training.evaluate.served import evaluation_folder, load_served, scored_versions
from training.plots import plot_denoise_crops

_SETTINGS = Settings(max_image_pixels=100_000_000)


def add_noise(clean: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """Seeded Gaussian noise, clipped and rounded to 8 bits like a saved noisy photo."""
    rng = np.random.default_rng(seed)
    return np.clip(np.rint(clean + rng.normal(0.0, sigma, clean.shape)), 0, 255).astype(np.uint8)


def _channel_axis(image: np.ndarray) -> int | None:
    """-1 for (H, W, 3) colour, None for (H, W) gray: how skimage is told which it has."""
    return -1 if image.ndim == 3 else None


def _ours(model: LoadedModel, noisy: np.ndarray) -> np.ndarray:
    answer = image_reconstruct(model, png_bytes(noisy), "image/png", _SETTINGS)
    decoded = Image.open(io.BytesIO(answer))
    if noisy.ndim == 2 and decoded.mode != "L":
        raise ValueError(f"the service answered a gray image with a {decoded.mode} image; gray in must be gray out")
    return np.asarray(decoded.convert("L" if noisy.ndim == 2 else "RGB"))


def _nlm(noisy: np.ndarray, sigma: float) -> np.ndarray:
    image = noisy.astype(np.float64) / 255.0
    s = sigma / 255.0
    out = denoise_nl_means(
        image, h=0.8 * s, sigma=s, patch_size=5, patch_distance=6, fast_mode=True, channel_axis=_channel_axis(noisy)
    )
    return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)


def _bm3d(noisy: np.ndarray, sigma: float) -> np.ndarray:
    variant = bm3d.bm3d if noisy.ndim == 2 else bm3d.bm3d_rgb
    out = variant(noisy.astype(np.float64) / 255.0, sigma_psd=sigma / 255.0)
    return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)


def _metrics(clean: np.ndarray, result: np.ndarray) -> dict[str, float]:
    return {
        "psnr": psnr(clean, result),
        "ssim": float(structural_similarity(clean, result, channel_axis=_channel_axis(clean), data_range=255)),
    }


def run(
    images: Path,
    model_dir: Path,
    sigmas: list[float],
    out: Path | None = None,
    bm3d_limit: int = 10,
    split: str = "heldout",
    gray: bool = False,
) -> dict[str, Any]:
    """Evaluate; writes `denoise.csv`, `denoise.json` and `denoise_crops.png` under `out`.

    `out` defaults to `docs/evaluation/<model>/v<N>/` of the version scored (`.../gray/` with `gray`).
    """
    files = select_images(images, split)
    model = load_served(model_dir)
    out = out or evaluation_folder(model.manifest.name, model.manifest.version) / ("gray" if gray else "")
    rows: list[dict[str, Any]] = []
    crops: list[tuple[float, dict[str, np.ndarray]]] = []
    for index, path in enumerate(tqdm(files, desc="denoise evaluation", unit="image")):
        clean = np.asarray(Image.open(path).convert("L" if gray else "RGB"))
        for sigma in sigmas:
            noisy = add_noise(clean, sigma, seed=index * 1000 + int(sigma))
            results = {"noisy": noisy, "ours": _ours(model, noisy), "nlm": _nlm(noisy, sigma)}
            if index < bm3d_limit:
                results["bm3d"] = _bm3d(noisy, sigma)
            for method, result in results.items():
                rows.append({"image": path.name, "sigma": sigma, "method": method, **_metrics(clean, result)})
            if index == 0:
                crops.append((sigma, {"clean": clean, **results}))
    report = {
        "models": scored_versions(model),
        "images": str(images),
        "split": split,
        "mode": "gray" if gray else "rgb",
        "count": len(files),
        "bm3d_images": min(bm3d_limit, len(files)),
        "model": f"{model.manifest.name}/{model.manifest.version}",
        "means": _means(rows, bm3d_limit, files),
    }
    write_report(out, "denoise", rows, report)
    plot_denoise_crops(crops, out / "denoise_crops.png")
    return report


def _means(rows: list[dict[str, Any]], bm3d_limit: int, files: list[Path]) -> dict[str, Any]:
    """Mean PSNR/SSIM per sigma and method, over all images and over the BM3D subset."""
    subset = {p.name for p in files[:bm3d_limit]}
    means: dict[str, Any] = {}
    for sigma in sorted({r["sigma"] for r in rows}):
        entry: dict[str, Any] = {}
        for scope, keep in (("all", lambda r: True), ("bm3d_subset", lambda r: r["image"] in subset)):
            for method in sorted({r["method"] for r in rows}):
                chosen = [r for r in rows if r["sigma"] == sigma and r["method"] == method and keep(r)]
                if chosen:
                    entry.setdefault(scope, {})[method] = {
                        "psnr": round(float(np.mean([r["psnr"] for r in chosen])), 3),
                        "ssim": round(float(np.mean([r["ssim"] for r in chosen])), 4),
                        "images": len(chosen),
                    }
        means[f"sigma_{sigma:g}"] = entry
    return means
