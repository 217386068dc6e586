"""Write the model card (README.md) of every codec quality level from its manifest and the evaluation.

    python scripts/codec_cards.py [--models models] [--evaluation docs/evaluation/image-codec/vN/codec.json]

The levels share everything but lambda, steps and their own RD point, so the cards are generated:
edit the text here, not in models/image-codec-q*/README.md.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from service.repository import latest_version_folder

LEVEL_NOTE = (
    "Trained from scratch per level on one NVIDIA H100 (scripts/gpu_train.sh: the five levels and the "
    "denoiser shared the GPU for an 8-minute budget each), exported on a CPU with torch 2.13.0. "
    "Large weight tensors came back from the GPU machine as fp16 (transfer cap); every number here is "
    "measured on the exported model."
)


def _fmt(value: float, digits: int = 2) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def scored(evaluation: dict[str, Any]) -> str:
    """The versions an evaluation scored, short: `q1 v3, q2 v3, ..., q5 v1`."""
    return ", ".join(f"q{name.rsplit('q', 1)[-1]} v{version}" for name, version in evaluation["models"].items())


def card(manifest: dict[str, Any], evaluation: dict[str, Any], levels: int, report: Path) -> str:
    """The README of one level; `report` is the evaluation's folder."""
    training, model = manifest["training"], manifest["training"]["config"]["model"]
    optim, data = manifest["training"]["config"]["optim"], manifest["training"]["config"]["data"]
    name, level = manifest["name"], manifest["name"].rsplit("q", 1)[-1]
    size_mb = sum(f.stat().st_size for f in manifest["_folder"].iterdir()) / 1e6
    point = next(p for p in evaluation["curves"]["ours"] if p["setting"] == name)
    summary = evaluation["summary"]
    at25, at50 = summary["psnr_at_0.25_bpp"], summary["psnr_at_0.5_bpp"]
    return f"""# {name} — learned image codec, quality level {level} of {levels}

| | |
|---|---|
| Task | `compress`: `encode` -> bitstream (`application/octet-stream`), `decode` -> PNG, `reconstruct` -> both, with `X-Bits-Per-Pixel` and `X-PSNR` |
| Family | `codec`: Balle et al. (2017) factorized prior; analysis 4 x (5x5 conv stride 2) with GDN, synthesis with IGDN, N = {model["hidden"]}, M = {model["latent_channels"]} latent channels (16x downsampling); per-channel learned density -> 16-bit integer tables (`entropy_tables.json`) |
| Version | {manifest["version"]} (earlier versions stay in the repository so their streams still decode) |
| Rate-distortion weight | lambda = {model["lmbda"]} (loss = bpp + lambda * 255^2 * MSE) |
| Input | RGB, any size up to the pixel limit (padded to a multiple of 16, cropped back) |
| Training data | `../shared/datasets/images/bsds400` (copied to the GPU machine as `.gpu-data/bsds400`), every 10th file by name held out (40 photos); random {data["crop_size"]}x{data["crop_size"]} crops and flips |
| Training | {training["steps"]} steps (best validation checkpoint) of batch {optim["batch_size"]}, AdamW lr {optim["lr"]} with {optim["warmup_steps"]} warm-up steps and cosine decay over a {optim["time_budget_s"]:.0f} s budget, fp32/TF32; {training["wall_time_s"]:.0f} s on {training["device"]}. {LEVEL_NOTE} |
| Validation (256x256 crops, rounded latents) | {training["final_validation"]["bpp"]:.3f} bpp, {training["final_validation"]["psnr"]:.2f} dB |
| Parity | ONNX Runtime vs torch max abs diff {manifest["parity_max_abs_diff"]:.1e} |
| Size | {size_mb:.1f} MB (encoder, decoder, tables) |

## Evaluation ({evaluation["count"]} held-out BSDS photos, whole)

`ae-train evaluate codec --images ../shared/datasets/images/bsds400` (all levels, JPEG and WebP;
`{report.as_posix()}/`, which scored {scored(evaluation)}):

| | bpp (real bytes, header included) | PSNR | MS-SSIM |
|---|---|---|---|
| {name} | {point["bpp"]:.3f} | {point["psnr"]:.2f} dB | {point["ms_ssim"]:.4f} |

The ladder against the classical codecs (PSNR in dB, interpolated in log-rate):

| | at 0.25 bpp | at 0.5 bpp |
|---|---|---|
| ours | {_fmt(at25["ours"])} | {_fmt(at50["ours"])} |
| JPEG | {_fmt(at25["JPEG"])} | {_fmt(at50["JPEG"])} |
| WebP | {_fmt(at25["WEBP"])} | {_fmt(at50["WEBP"])} |

BD-rate against JPEG {summary["bd_rate_vs_jpeg_percent"]:+.1f}%, against WebP {summary["bd_rate_vs_webp_percent"]:+.1f}%
(negative = fewer bits for the same PSNR). Published factorized-prior models train for about a million
steps; these saw a few thousand, so the curve is still below the paper's.

## Limits

- Streams decode only with the exact model version and tables that wrote them (checked).
- Latent values outside a channel's table support (probability mass below 1e-6) are clipped.
- Encoding and decoding run the full-resolution transforms on the CPU: see docs/benchmarks.md and the
  issue notes for timings.

## Reproduce

```bash
scripts/gpu_train.sh ../shared/datasets/images/bsds400 480     # on a GPU machine; or, on a CPU:
FIT_ARGS="--set optim.time_budget_s=1800" scripts/train_defaults.sh image-codec
ae-train export runs/{name} --name {name} --task compress     # after gpu_train.sh
ae-train evaluate codec --images ../shared/datasets/images/bsds400
```
"""


def latest_report(reports: Path = Path("docs/evaluation/image-codec")) -> Path:
    """`codec.json` of the highest `vN` folder: the evaluation of the ladder as served."""
    folders = [p for p in reports.glob("v*") if p.name[1:].isdigit()]
    return max(folders, key=lambda p: int(p.name[1:])) / "codec.json"


def main() -> None:
    """Write every level's card."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--evaluation", type=Path, default=None, help="default: the highest image-codec/vN")
    args = parser.parse_args()
    path = args.evaluation or latest_report()
    evaluation = json.loads(path.read_text())
    folders = sorted(args.models.glob("image-codec-q*"))
    for folder in folders:
        version = latest_version_folder(folder)
        manifest = json.loads((version / "model.json").read_text())
        manifest["_folder"] = version
        (folder / "README.md").write_text(card(manifest, evaluation, len(folders), path.parent))
        print(f"wrote {folder / 'README.md'}")


if __name__ == "__main__":
    main()
