"""What coding in tiles costs: held-out photos through a codec's reconstruct, whole and in tiles.

    python -m bench.codec_tiles [--side 512] [--scale 2] [--images 10] [--out docs/codec_tiles.json]

Each photo goes through the service's own reconstruct route (in process: two apps, one with
AE_CODEC_TILE_SIDE=0, one with the side), PNG in, real stream, PNG out; the answers' X-PSNR and
X-Bits-Per-Pixel are compared per photo. The held-out BSDS photos (481x321) are smaller than the
default tile, so `--scale 2` enlarges them (Lanczos) to 962x642, which tiles of 512 cut into 2 x 2; an
enlarged photo is smoother than a native one of that size, so its seams may cost a little less. With
`--scale 1 --side 256` the native photos are cut into 2 x 2 tiles of 256.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import sys
from pathlib import Path

from fastapi.testclient import TestClient
from PIL import Image

from service.config import Settings
from service.main import create_app

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("AE_DATASETS", ROOT.parent / "shared" / "datasets"))
MODELS = ["image-codec-q1", "image-codec-q3", "image-codec-q5"]


def held_out_photos(count: int, scale: int) -> list[bytes]:
    """The first `count` held-out BSDS photos (every 10th file by name), enlarged `scale` times, as PNG."""
    files = sorted((DATA / "images" / "bsds400").rglob("*.jpg"))[::10][:count]
    photos = []
    for path in files:
        image = Image.open(path).convert("RGB")
        if scale != 1:
            image = image.resize((image.width * scale, image.height * scale), Image.Resampling.LANCZOS)
        out = io.BytesIO()
        image.save(out, format="PNG")
        photos.append(out.getvalue())
    return photos


def _client(side: int) -> TestClient:
    settings = Settings(
        repository=ROOT / "models",
        providers=["CPUExecutionProvider"],
        codec_tile_side=side,
        max_image_pixels=4_000_000,
        request_timeout_s=600,
    )
    return TestClient(create_app(settings))


def _scores(client: TestClient, model: str, photo: bytes) -> tuple[float, float]:
    answer = client.post(f"/v1/models/{model}/reconstruct", content=photo, headers={"content-type": "image/png"})
    answer.raise_for_status()
    return float(answer.headers["x-psnr"]), float(answer.headers["x-bits-per-pixel"])


def main(argv: list[str] | None = None) -> int:
    """Measure, print a line per model and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=512)
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--images", type=int, default=10)
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "codec_tiles.json")
    args = parser.parse_args(argv)
    photos = held_out_photos(args.images, args.scale)
    rows = []
    with _client(0) as whole, _client(args.side) as tiled:
        for model in args.models:
            pairs = [(_scores(whole, model, p), _scores(tiled, model, p)) for p in photos]
            psnr_cost = [w[0] - t[0] for w, t in pairs]
            rate_cost = [100.0 * (t[1] / w[1] - 1.0) for w, t in pairs]
            rows.append(
                {
                    "model": model,
                    "psnr_whole_db": round(statistics.mean(w[0] for w, _ in pairs), 3),
                    "psnr_tiled_db": round(statistics.mean(t[0] for _, t in pairs), 3),
                    "psnr_cost_db_mean": round(statistics.mean(psnr_cost), 3),
                    "psnr_cost_db_max": round(max(psnr_cost), 3),
                    "bpp_whole": round(statistics.mean(w[1] for w, _ in pairs), 4),
                    "bpp_tiled": round(statistics.mean(t[1] for _, t in pairs), 4),
                    "rate_cost_percent_mean": round(statistics.mean(rate_cost), 2),
                }
            )
            print(json.dumps(rows[-1]))
    report = {
        "command": "python -m bench.codec_tiles " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": f"{platform.processor() or platform.machine()}, python {platform.python_version()}",
        "photos": f"{len(photos)} held-out BSDS photos, enlarged {args.scale}x",
        "tile_side": args.side,
        "rows": rows,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
