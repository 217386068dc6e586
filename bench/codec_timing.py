"""Encode and decode time of a 768x512 photo through the running service, per codec quality level.

The fixed-rate ladder (`image-codec-q*`) is timed per level; the variable-rate `image-codec` at three
qualities and with a `target_bpp` (its rate control, a bisection that codes the stream several times).

    python -m bench.codec_timing [--image PATH] [--repeats 5] [--size 768x512] [--out docs/codec_timing.json]

Starts `ae-serve` on the committed models, sends the photo to each level's `encode` (PNG in, bitstream
out) and the stream to `decode` (bitstream in, PNG out) over loopback, one request at a time, and
reports the median and best wall time of each, and the median per megapixel. The default photo is the
first held-out BSDS image, cropped or mirrored out to 768x512 (the Kodak size) so the number compares
with published ones; `--size 3072x2048` times a large photo, which the service codes in tiles
(AE_CODEC_TILE_SIDE).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

from bench.net import free_port, service_command, spawned

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("AE_DATASETS", ROOT.parent / "shared" / "datasets"))
WIDTH, HEIGHT = 768, 512


def photo(path: Path | None, width: int = WIDTH, height: int = HEIGHT) -> bytes:
    """PNG bytes of a `width` x `height` RGB photo (cropped; mirrored out where it is smaller)."""
    if path is None:
        # The first held-out photo: every 10th file by sorted name is the training runs' validation split.
        path = sorted((DATA / "images" / "bsds400").rglob("*.jpg"))[0]
    pixels = np.asarray(Image.open(path).convert("RGB"))
    if pixels.shape[0] > pixels.shape[1]:
        pixels = pixels.transpose(1, 0, 2)  # landscape, as 768x512 is
    pixels = pixels[:height, :width]
    pad = ((0, height - pixels.shape[0]), (0, width - pixels.shape[1]), (0, 0))
    out = io.BytesIO()
    Image.fromarray(np.pad(pixels, pad, mode="symmetric")).save(out, format="PNG")
    return out.getvalue()


def _post(url: str, body: bytes, content_type: str) -> tuple[float, bytes, dict[str, str]]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type}, method="POST")
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=120) as response:
        payload = response.read()
        return time.perf_counter() - started, payload, {k.lower(): v for k, v in response.headers.items()}


def operating_points(models_dir: Path) -> list[tuple[str, str]]:
    """(label, encode query) per point timed: each ladder level, and the variable-rate codec at several rates."""
    points = [(p.name, "") for p in sorted(models_dir.glob("image-codec-q*"))]
    if (models_dir / "image-codec").is_dir():
        points += [(f"image-codec@{q}", f"?quality={q}") for q in (0.25, 0.5, 0.75)]
        points.append(("image-codec target_bpp=0.5", "?target_bpp=0.5"))
    return points


def measure(
    base: str, points: list[tuple[str, str]], png: bytes, repeats: int, megapixels: float
) -> list[dict[str, object]]:
    """Median and best encode and decode seconds per operating point (one warm-up request each first)."""
    rows = []
    for label, query in points:
        name = label.split("@")[0].split(" ")[0]
        encode_times, decode_times = [], []
        stream, headers = b"", dict[str, str]()
        for attempt in range(repeats + 1):
            seconds, stream, headers = _post(f"{base}/v1/models/{name}/encode{query}", png, "image/png")
            decode_seconds, _, _ = _post(f"{base}/v1/models/{name}/decode", stream, "application/octet-stream")
            if attempt:  # the first round warms the sessions and allocators
                encode_times.append(seconds)
                decode_times.append(decode_seconds)
        rows.append(
            {
                "model": label,
                "bpp": float(headers.get("x-bits-per-pixel", "nan")),
                "stream_bytes": len(stream),
                "encode_s_median": statistics.median(encode_times),
                "encode_s_best": min(encode_times),
                "decode_s_median": statistics.median(decode_times),
                "decode_s_best": min(decode_times),
                "encode_s_per_megapixel": statistics.median(encode_times) / megapixels,
                "decode_s_per_megapixel": statistics.median(decode_times) / megapixels,
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    """Run the measurement, print a table and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, default=None)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--size", default=f"{WIDTH}x{HEIGHT}", help="WIDTHxHEIGHT of the photo timed")
    parser.add_argument("--models-dir", type=Path, default=ROOT / "models")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "codec_timing.json")
    args = parser.parse_args(argv)
    points = operating_points(args.models_dir)
    width, height = (int(side) for side in args.size.lower().split("x"))
    png = photo(args.image, width, height)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {"AE_PROVIDERS": '["CPUExecutionProvider"]', "AE_MAX_IMAGE_PIXELS": str(max(width * height * 2, 1 << 24))}
    with spawned(service_command(port, args.models_dir), env, base, "/health/ready"):
        rows = measure(base, points, png, args.repeats, width * height / 1e6)
    report = {
        "command": "python -m bench.codec_timing " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": f"{platform.processor() or platform.machine()}, python {platform.python_version()}",
        "image": f"{width}x{height}",
        "rows": rows,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    for row in rows:
        print(
            f"{row['model']}: {row['bpp']:.3f} bpp, encode {row['encode_s_median']:.3f} s, "
            f"decode {row['decode_s_median']:.3f} s (median of {args.repeats})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
