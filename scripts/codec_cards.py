"""Write the model card (README.md) of every codec quality level from its manifest and the evaluation.

    python scripts/codec_cards.py [--models models] [--evaluation docs/evaluation/image-codec/vN/codec.json]

With a gray variant in the latest versions, the card adds its section from the gray evaluations of that
ladder (`.../vN/gray/codec.json`) and of the one before it (`.../vM/gray/codec.json`, the RGB graphs on
the same gray photos), when both exist.

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
from training.evaluate.rd import bd_rate

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


def _curve(evaluation: dict[str, Any], method: str) -> tuple[list[float], list[float]]:
    points = evaluation["curves"][method]
    return [p["bpp"] for p in points], [p["psnr"] for p in points]


def gray_section(
    manifest: dict[str, Any], gray: dict[str, Any], before: dict[str, Any], folders: tuple[Path, Path]
) -> str:
    """The card's section on gray images: the variant's training and its gray evaluation beside the RGB path's."""
    record, name = manifest["gray_training"], manifest["name"]
    ours = next(p for p in gray["curves"]["ours"] if p["setting"] == name)
    rgb = next(p for p in before["curves"]["ours"] if p["setting"] == name)
    against_rgb = bd_rate(*_curve(before, "ours"), *_curve(gray, "ours"))
    summary = gray["summary"]
    return f"""
## Gray images (gray variant, since version {manifest["version"]})

A gray photo is coded as one channel on graphs of its own (`gray_encoder.onnx`, `gray_decoder.onnx`,
`gray_entropy_tables.json`; a 1-channel stream, decoded to a gray PNG). They are this level's RGB
transforms converted to one channel (`ae-train fit --init-from`: input filters summed over R, G and B,
output filters combined with the luma weights, so they start as exactly the RGB model on the
replicated photo), then, on gray {record["config"]["data"]["crop_size"]}x{record["config"]["data"]["crop_size"]} crops of the same training photos, the density model
alone (800 steps at lr 0.01, the graphs hold no copy of it) and {record["steps"]} steps of everything at this level's lambda
(batch {record["config"]["optim"]["batch_size"]}, lr {record["config"]["optim"]["lr"]}; {record["wall_time_s"]:.0f} s for the second part) on a 2-core CPU
(`scripts/train_gray_variants.sh`). The RGB graphs are version {manifest["version"] - 1 if manifest["version"] > 1 else 1}'s, byte for byte.

On the {gray["count"]} held-out photos converted to gray (`ae-train evaluate codec --gray`; `{folders[0].as_posix()}/`
for this version, `{folders[1].as_posix()}/` for the RGB graphs on the same gray photos):

| | bpp | PSNR | MS-SSIM |
|---|---|---|---|
| gray variant (1-channel stream) | {ours["bpp"]:.3f} | {ours["psnr"]:.2f} dB | {ours["ms_ssim"]:.4f} |
| RGB graphs on the replicated photo (3-channel stream) | {rgb["bpp"]:.3f} | {rgb["psnr"]:.2f} dB | {rgb["ms_ssim"]:.4f} |

BD-rate of the gray ladder against the RGB ladder on gray photos {against_rgb:+.1f}%; against JPEG's gray
mode {summary["bd_rate_vs_jpeg_percent"]:+.1f}%, against WebP (which codes gray as colour) {summary["bd_rate_vs_webp_percent"]:+.1f}%.
"""


def card(manifest: dict[str, Any], evaluation: dict[str, Any], levels: int, report: Path, gray: str = "") -> str:
    """The README of one level; `report` is the evaluation's folder, `gray` its gray section (or none)."""
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

`ae-train evaluate codec --images ../shared/datasets/images/bsds400` (all levels, JPEG, WebP and AVIF;
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
| AVIF | {_fmt(at25.get("AVIF", float("nan")))} | {_fmt(at50.get("AVIF", float("nan")))} |

BD-rate against JPEG {summary["bd_rate_vs_jpeg_percent"]:+.1f}%, against WebP {summary["bd_rate_vs_webp_percent"]:+.1f}%,
against AVIF {summary.get("bd_rate_vs_avif_percent", float("nan")):+.1f}%
(negative = fewer bits for the same PSNR). Published factorized-prior models train for about a million
steps; these saw a few thousand, so the curve is still below the paper's.
{gray}
## Limits

- Streams decode only with the exact model version and tables that wrote them (checked).
- Latent values outside a channel's table support are coded exactly with an escape (streams written
  before escape coding clipped them, and still decode as written).
- Images with a side above `AE_CODEC_TILE_SIDE` (512) are coded in independent tiles: 0.08-0.16 dB
  at that side (docs/benchmarks.md, "Codec tiles").
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


def _gray_reports(report: Path) -> tuple[tuple[dict[str, Any], dict[str, Any]], tuple[Path, Path]] | None:
    """The gray evaluations of this ladder (`report`) and of the highest one before it, when both exist."""
    earlier = [p for p in report.parent.glob("v*") if p.name[1:].isdigit() and int(p.name[1:]) < int(report.name[1:])]
    if not earlier or not (report / "gray" / "codec.json").is_file():
        return None
    before = max(earlier, key=lambda p: int(p.name[1:])) / "gray"
    if not (before / "codec.json").is_file():
        return None
    reports = (report / "gray", before)
    return (
        json.loads((reports[0] / "codec.json").read_text()),
        json.loads((reports[1] / "codec.json").read_text()),
    ), reports


def main() -> None:
    """Write every level's card."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--evaluation", type=Path, default=None, help="default: the highest image-codec/vN")
    args = parser.parse_args()
    path = args.evaluation or latest_report()
    evaluation = json.loads(path.read_text())
    gray_reports = _gray_reports(path.parent)
    folders = sorted(args.models.glob("image-codec-q*"))
    for folder in folders:
        version = latest_version_folder(folder)
        manifest = json.loads((version / "model.json").read_text())
        manifest["_folder"] = version
        gray = ""
        if manifest.get("gray_training") and gray_reports is not None:
            (now, before), reports = gray_reports
            gray = gray_section(manifest, now, before, reports)
        (folder / "README.md").write_text(card(manifest, evaluation, len(folders), path.parent, gray))
        print(f"wrote {folder / 'README.md'}")


if __name__ == "__main__":
    main()
