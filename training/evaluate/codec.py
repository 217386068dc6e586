"""`ae-train evaluate codec`: our quality levels against JPEG, WebP and AVIF, measured as the field does.

For every held-out image and every operating point (each codec model; JPEG, WebP and AVIF at a range
of qualities through Pillow; AVIF where Pillow was built with it, as its wheels are from 11.3 on): bits
per pixel from the real bytes (our stream's header and checksum
included), PSNR and MS-SSIM (pytorch-msssim) of the decoded 8-bit pixels. Means per operating point
make the RD curves; BD-rate compares the curves; PSNR at 0.25 and 0.5 bpp is interpolated.

A variable-rate model (`hyperprior-codec`) is one curve on its own: it is scored at `VARIABLE_QUALITIES`.
`baseline` models (e.g. the fixed-rate ladder a new codec replaces) make a curve named "baseline", and
the report gives the BD-rate of ours against it too. Encode and decode seconds per megapixel (the service's
own stages, one thread pool, whole photos) are reported per model.

`gray`: the photos converted to gray (luma) and scored as gray: ours through the service's gray path
(a 1-channel stream on a model's gray variant; else the RGB graphs, answered as luma), JPEG in its gray
mode, WebP (which has none: it codes the gray image as RGB). Reported under `.../gray/`.
"""

from __future__ import annotations

import io
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, features
from pytorch_msssim import ms_ssim
from tqdm import tqdm

from service.codecs.image import luma
from service.codecs.rate_control import RateRequest
from service.config import Settings
from service.kinds.codec import codec_decode, codec_encode, psnr
from service.model import LoadedModel
from training.evaluate.images import png_bytes, select_images, write_report
from training.evaluate.rd import bd_rate, psnr_at_rate
from training.evaluate.served import evaluation_folder, load_served, scored_versions
from training.plots import plot_rd_curves

QUALITIES = {
    "JPEG": [2, 5, 10, 15, 20, 30, 40, 50, 65, 80, 90],
    "WEBP": [0, 5, 10, 20, 30, 40, 50, 65, 80, 90],
    **({"AVIF": [5, 10, 20, 30, 40, 50, 60, 70, 80, 90]} if features.check("avif") else {}),
}
_SETTINGS = Settings(max_image_pixels=100_000_000)
VARIABLE_QUALITIES = [0.0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0]


def _score(original: np.ndarray, decoded: np.ndarray, size_bytes: int) -> dict[str, float]:
    """bpp, PSNR and MS-SSIM of 8-bit (H, W, 3) or gray (H, W) pixels."""
    tensors = [
        torch.from_numpy(np.atleast_3d(a).astype(np.float32)).permute(2, 0, 1)[None] for a in (original, decoded)
    ]
    return {
        "bpp": size_bytes * 8 / (original.shape[0] * original.shape[1]),
        "psnr": psnr(original, decoded),
        "ms_ssim": float(ms_ssim(tensors[0], tensors[1], data_range=255.0)),
    }


def _pillow_point(original: np.ndarray, fmt: str, quality: int) -> dict[str, float]:
    out = io.BytesIO()
    Image.fromarray(original).save(out, format=fmt, quality=quality)
    decoded = np.asarray(Image.open(io.BytesIO(out.getvalue())).convert("L" if original.ndim == 2 else "RGB"))
    return _score(original, decoded, len(out.getvalue()))


def _codec_point(model: LoadedModel, original: np.ndarray, png: bytes, rate: RateRequest) -> dict[str, float]:
    started = time.perf_counter()
    encoded = codec_encode(model, png, _SETTINGS, rate)
    encoded_at = time.perf_counter()
    decoded = codec_decode(model, encoded.stream, _SETTINGS)
    decoded_at = time.perf_counter()
    if original.ndim == 2:  # a gray photo: a gray variant's answer, or the luma of an RGB stream's
        decoded = luma(decoded)
    pixels = np.rint(np.clip(decoded, 0, 1) * 255).astype(np.uint8).transpose(1, 2, 0)
    megapixels = original.shape[0] * original.shape[1] / 1e6
    return {
        **_score(original, pixels[..., 0] if original.ndim == 2 else pixels, len(encoded.stream)),
        "encode_s_per_mp": (encoded_at - started) / megapixels,
        "decode_s_per_mp": (decoded_at - encoded_at) / megapixels,
    }


def _operating_points(model: LoadedModel) -> list[tuple[str, RateRequest]]:
    """(setting, rate) of each point a model is scored at: its one rate, or a variable-rate model's qualities."""
    name = model.manifest.name
    if not model.tables_for(gray=False).variable_rate:
        return [(name, RateRequest())]
    return [(f"{name}@{quality:g}", RateRequest(quality=quality)) for quality in VARIABLE_QUALITIES]


def _curves(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Mean bpp / PSNR / MS-SSIM per operating point, grouped by method, sorted by rate."""
    points: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        points.setdefault((row["method"], row["setting"]), []).append(row)
    curves: dict[str, list[dict[str, Any]]] = {}
    for (method, setting), group in points.items():
        mean = {k: float(np.mean([r[k] for r in group])) for k in ("bpp", "psnr", "ms_ssim", *_TIMES) if k in group[0]}
        curves.setdefault(method, []).append({"setting": setting, **mean})
    return {m: sorted(c, key=lambda p: p["bpp"]) for m, c in curves.items()}


_TIMES = ("encode_s_per_mp", "decode_s_per_mp")


def _summary(curves: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    ours = curves["ours"]
    rates, psnrs = [p["bpp"] for p in ours], [p["psnr"] for p in ours]
    summary: dict[str, Any] = {}
    for method in [*QUALITIES, *(["baseline"] if "baseline" in curves else [])]:
        anchor = curves[method]
        summary[f"bd_rate_vs_{method.lower()}_percent"] = bd_rate(
            [p["bpp"] for p in anchor], [p["psnr"] for p in anchor], rates, psnrs
        )
    for target in (0.25, 0.5):
        summary[f"psnr_at_{target}_bpp"] = {
            m: psnr_at_rate([p["bpp"] for p in c], [p["psnr"] for p in c], target) for m, c in curves.items()
        }
    for method in ("ours", "baseline"):
        if method in curves:
            summary[f"{method}_seconds_per_megapixel"] = {
                key: float(np.median([p[key] for p in curves[method]])) for key in _TIMES
            }
    return summary


def ladder_folder(models: list[LoadedModel]) -> Path:
    """`docs/evaluation/<ladder>/v<N>/`: the levels' name less `-qK`, numbered by the highest level version.

    The five levels image-codec-q1..q5 at versions 3, 3, 3, 3, 1 make `image-codec/v3`.
    """
    ladders = {re.sub(r"-q\d+$", "", m.manifest.name) for m in models}
    name = ladders.pop() if len(ladders) == 1 else "-".join(sorted(ladders))
    return evaluation_folder(name, max(m.manifest.version for m in models))


def run(
    images: Path,
    model_dirs: list[Path],
    out: Path | None = None,
    split: str = "heldout",
    gray: bool = False,
    baseline_dirs: list[Path] | None = None,
) -> dict[str, Any]:
    """Evaluate, write `codec.csv` (per image), `codec.json` (curves, BD-rates) and `rd_curves.png`.

    `out` defaults to `ladder_folder` of the models scored (`.../gray/` with `gray`); the report's
    `models` names each version (and `baseline` the baseline's).
    """
    files = select_images(images, split)
    models = [load_served(d) for d in model_dirs]
    baselines = [load_served(d) for d in baseline_dirs or []]
    out = out or ladder_folder(models) / ("gray" if gray else "")
    rows: list[dict[str, Any]] = []
    for path in tqdm(files, desc="codec evaluation", unit="image"):
        original = np.asarray(Image.open(path).convert("L" if gray else "RGB"))
        png = png_bytes(original)
        for method, group in (("ours", models), ("baseline", baselines)):
            for model in group:
                for setting, rate in _operating_points(model):
                    point = _codec_point(model, original, png, rate)
                    rows.append({"image": path.name, "method": method, "setting": setting, **point})
        for fmt, qualities in QUALITIES.items():
            for quality in qualities:
                rows.append(
                    {
                        "image": path.name,
                        "method": fmt,
                        "setting": f"q{quality}",
                        **_pillow_point(original, fmt, quality),
                    }
                )
    curves = _curves(rows)
    report = {
        "models": scored_versions(*models),
        **({"baseline": scored_versions(*baselines)} if baselines else {}),
        "images": str(images),
        "split": split,
        "mode": "gray" if gray else "rgb",
        "count": len(files),
        "summary": _summary(curves),
        "curves": curves,
    }
    write_report(out, "codec", rows, report)
    plot_rd_curves(curves, out / "rd_curves.png")
    return report
