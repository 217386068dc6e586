"""Regenerate the committed test fixtures (`tests/fixtures/`) from the full data sets.

python scripts/make_fixtures.py --datasets ../shared/datasets

The fixtures let a fresh clone run its tests with no data sets beside it: 40 photo crops and 200
heartbeat series, small enough to commit (well under 2 MB), real enough to train tiny models on.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures"
CROPS = 40
CROP_SIZE = (176, 176)
# 200 series: the normal class, then the abnormal kinds (5 has only two in the file).
SERIES_PER_CLASS = {1: 110, 2: 60, 3: 10, 4: 18, 5: 2}


def write_image_crops(bsds: Path, out: Path) -> None:
    """Every 10th photo by sorted name, centre-cropped to 176x176 (MS-SSIM needs sides over 160) and saved as JPEG (quality 92)."""
    out.mkdir(parents=True, exist_ok=True)
    photos = sorted(bsds.glob("*.jpg"))[::10][:CROPS]
    for photo in photos:
        with Image.open(photo) as image:
            left = (image.width - CROP_SIZE[0]) // 2
            top = (image.height - CROP_SIZE[1]) // 2
            crop = image.convert("RGB").crop((left, top, left + CROP_SIZE[0], top + CROP_SIZE[1]))
            crop.save(out / photo.name, quality=92)


def write_series(ecg: Path, out: Path) -> None:
    """200 series of ECG5000's TRAIN file, every class in it (file order), values to 4 decimals.

    The file is sorted by class, so its head would hold normal beats only; the anomaly tests need
    abnormal ones too.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = [line.split() for line in ecg.read_text().splitlines() if line.strip()]
    taken: dict[str, int] = {}
    lines = []
    for row in rows:
        label = row[0]
        if taken.get(label, 0) < SERIES_PER_CLASS.get(int(float(label)), 0):
            taken[label] = taken.get(label, 0) + 1
            lines.append(row)
    text = "\n".join(" ".join([str(int(float(row[0])))] + [f"{float(v):.4f}" for v in row[1:]]) for row in lines)
    out.write_text(text + "\n")


def main(argv: list[str] | None = None) -> None:
    """Write both fixtures from `--datasets`."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", type=Path, default=Path("../shared/datasets"))
    args = parser.parse_args(argv)
    write_image_crops(args.datasets / "images" / "bsds400", OUT / "images")
    write_series(args.datasets / "sequences" / "ecg5000" / "ECG5000_TRAIN.txt", OUT / "sequences" / "ecg5000-200.txt")


if __name__ == "__main__":
    main()
