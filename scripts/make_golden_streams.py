"""Write golden codec streams (tests/fixtures/streams/) with this release, and record their decoded pixels.

    python scripts/make_golden_streams.py image-codec-q3/4 image-codec-q3/4:gray image-codec/1@0.25 ...

Each argument is MODEL/VERSION, `:gray` for the photo in gray, `@QUALITY` for a variable-rate codec's
quality (recorded as `quality`; without it, the service's default quality). The photo is the committed
`photo-96x64.png` (a crop of a BSDS fixture). Records already in streams.json for other streams are
kept: the `clipped` ones were written by the release before escape coding (flag bit 1) and must go on
decoding to the pixels they record. tests/service/test_golden_streams.py checks every record bit-exact:
the same bytes from encoding (escaped ones), the same pixels from decoding. One ONNX Runtime thread, so
that float summation order is fixed.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from service.codecs.rate_control import RateRequest
from service.config import Settings
from service.kinds.codec import codec_decode, codec_encode
from service.repository import load_version

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / "tests" / "fixtures" / "streams"
PHOTO = "photo-96x64.png"
SETTINGS = Settings(providers=["CPUExecutionProvider"], intra_op_threads=1)


def pixels_sha256(pixels: np.ndarray) -> str:
    """The sha256 of decoded (C, H, W) pixels in [0, 1], as 8-bit values (what an answer holds)."""
    return hashlib.sha256(np.rint(np.clip(pixels, 0, 1) * 255).astype(np.uint8).tobytes()).hexdigest()


def photo(gray: bool) -> bytes:
    """The golden photo as PNG bytes, in gray when asked."""
    image = Image.open(FOLDER / PHOTO)
    out = io.BytesIO()
    (image.convert("L") if gray else image).save(out, "PNG")
    return out.getvalue()


def main(specs: list[str]) -> None:
    """Write one escaped golden stream per MODEL/VERSION[:gray] spec and update streams.json."""
    index = FOLDER / "streams.json"
    records = json.loads(index.read_text()) if index.is_file() else []
    for spec in specs:
        spec, _, quality_text = spec.partition("@")
        target, _, mode = spec.partition(":")
        name, version = target.split("/")
        quality = float(quality_text) if quality_text else None
        model = load_version(ROOT / "models" / name / version, SETTINGS)
        stream = codec_encode(model, photo(mode == "gray"), SETTINGS, RateRequest(quality=quality)).stream
        at = f"-q{quality_text}" if quality_text else ""
        file = f"{name}-v{version}{'-gray' if mode == 'gray' else ''}{at}-escaped.aeic"
        (FOLDER / file).write_bytes(stream)
        record = {
            "file": file,
            "model": name,
            "version": int(version),
            "image": PHOTO,
            "gray": mode == "gray",
            "coding": "escaped",
            "pixels_sha256": pixels_sha256(codec_decode(model, stream, SETTINGS)),
            **({"quality": quality} if quality is not None else {}),
        }
        records = [r for r in records if r["file"] != file] + [record]
    index.write_text(json.dumps(records, indent=2) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
