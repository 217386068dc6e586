"""A corpus of broken and unusual requests, each with the answer it must get.

    python -m bench.corpus OUT_DIR      # writes every case's body and cases.json (for curl or other tools)

`build_cases()` is the generator; tests run the cases against the app with the default models
(tests/service/test_corpus.py) and with tiny models. Bodies are generated, never committed.
"""

from __future__ import annotations

import base64
import io
import json
import struct
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image

from service.codecs.bitstream import pack, unpack

PNG = "image/png"
JSON = "application/json"
NPY = "application/x-npy"
STREAM = "application/octet-stream"


@dataclass(frozen=True)
class Case:
    """One request and the status (and error code) it must get."""

    name: str
    path: str
    body: bytes
    content_type: str | None
    status: int
    code: str | None = None
    method: str = "POST"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Targets:
    """Model names the corpus aims at (None: that kind of model is not served, its cases are skipped)."""

    image: str | None = "image-conv"
    sequence: str | None = "ecg-embed"
    codec: str | None = "image-codec-q2"
    reconstruct_only: str | None = "image-denoise"
    max_body_bytes: int = 32 * 1024 * 1024
    max_batch: int = 256
    max_length: int = 2000


# ---------------------------------------------------------------- generators


def image_bytes(array: np.ndarray, fmt: str = "PNG", mode: str | None = None, **options: object) -> bytes:
    """Encode an array with Pillow."""
    out = io.BytesIO()
    Image.fromarray(array, mode).save(out, format=fmt, **options)
    return out.getvalue()


def noise(height: int, width: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    """Random uint8 pixels."""
    shape = (height, width, channels) if channels > 1 else (height, width)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims a size its few data bytes do not hold (a decompression bomb's header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1024)) + chunk(b"IEND", b"")
    )


def animated_gif() -> bytes:
    """A three-frame GIF."""
    frames = [Image.fromarray(noise(16, 16, seed=s)).convert("P") for s in range(3)]
    out = io.BytesIO()
    frames[0].save(out, format="GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    return out.getvalue()


def latent_json(shape: list[int], fill: float = 0.0) -> bytes:
    """A latent in the JSON form."""
    data = np.full(shape, fill, "<f4").tobytes()
    return json.dumps({"shape": shape, "dtype": "float32", "data": base64.b64encode(data).decode()}).encode()


def npy_bytes(array: np.ndarray) -> bytes:
    """An array as .npy."""
    out = io.BytesIO()
    np.save(out, array, allow_pickle=True)
    return out.getvalue()


def seqs(series: object) -> bytes:
    """A sequences request body."""
    return json.dumps({"sequences": series}).encode()


# ---------------------------------------------------------------- cases


def _image_cases(m: str, t: Targets) -> list[Case]:
    p = f"/v1/models/{m}/reconstruct"
    good = image_bytes(noise(24, 40))
    rgb = noise(20, 30)
    return [
        Case("zero-byte-image", p, b"", PNG, 400, "undecodable_body"),
        Case("truncated-png", p, good[: len(good) // 3], PNG, 400, "undecodable_body"),
        Case("truncated-jpeg", p, image_bytes(rgb, "JPEG")[:200], "image/jpeg", 400, "undecodable_body"),
        Case("garbage-as-png", p, b"this is not an image" * 10, PNG, 400, "undecodable_body"),
        Case("png-claims-100000x100000", p, png_claiming(100_000, 100_000), PNG, 413, "payload_too_large"),
        Case("1x1", p, image_bytes(noise(1, 1)), PNG, 200),
        # A strip runs padded to the stride: a side is capped (AE_MAX_IMAGE_SIDE, 16384 by default).
        Case("1x16384", p, image_bytes(noise(1, 16_384)), PNG, 200),
        Case("1x100000", p, image_bytes(noise(1, 100_000)), PNG, 413, "payload_too_large"),
        Case("cmyk-jpeg", p, image_bytes(noise(20, 30, 4), "JPEG", mode="CMYK"), "image/jpeg", 200),
        Case("16-bit-png", p, image_bytes(np.full((20, 30), 50000, np.uint16)), PNG, 200),
        Case("animated-gif", p, animated_gif(), "image/gif", 200),
        Case("palette-png", p, image_bytes(np.asarray(Image.fromarray(rgb).convert("P"))), PNG, 200),
        Case("rgba-png", p, image_bytes(noise(20, 30, 4)), PNG, 200),
        Case("grayscale-png", p, image_bytes(noise(20, 30, 1)), PNG, 200),
        Case("webp", p, image_bytes(rgb, "WEBP"), "image/webp", 200),
        Case("tiff", p, image_bytes(rgb, "TIFF"), "image/tiff", 200),
        Case("bmp", p, image_bytes(rgb, "BMP"), "image/bmp", 200),
        Case("image-as-text-plain", p, good, "text/plain", 415, "unsupported_media_type"),
        Case("image-without-content-type", p, good, None, 415, "unsupported_media_type"),
        Case(
            "multipart-without-file",
            p,
            b'--x\r\nContent-Disposition: form-data; name="other"\r\n\r\nv\r\n--x--\r\n',
            "multipart/form-data; boundary=x",
            422,
            "invalid_input",
        ),
        Case("multipart-broken", p, b"--x\r\nnot a part", "multipart/form-data; boundary=x", 400, "undecodable_body"),
        Case("body-over-limit", p, b"\0" * (t.max_body_bytes + 1), PNG, 413, "payload_too_large"),
        Case("unacceptable-accept", p, good, PNG, 406, "not_acceptable", headers={"accept": "text/csv"}),
        Case("latent-wrong-shape", f"/v1/models/{m}/decode", latent_json([3, 2, 2]), JSON, 422, "invalid_input"),
        Case(
            "latent-bad-base64",
            f"/v1/models/{m}/decode",
            json.dumps({"shape": [8, 1, 1], "dtype": "float32", "data": "!!"}).encode(),
            JSON,
            400,
            "undecodable_body",
        ),
        Case(
            "latent-float64",
            f"/v1/models/{m}/decode",
            json.dumps({"shape": [1], "dtype": "float64", "data": ""}).encode(),
            JSON,
            422,
            "invalid_input",
        ),
        Case("latent-nan", f"/v1/models/{m}/decode", latent_json([8, 1, 1], float("nan")), JSON, 422, "invalid_input"),
        Case(
            "latent-npy-pickled-object",
            f"/v1/models/{m}/decode",
            npy_bytes(np.array([{"a": 1}], dtype=object)),
            NPY,
            400,
            "undecodable_body",
        ),
        Case("latent-npy-strings", f"/v1/models/{m}/decode", npy_bytes(np.array(["x"])), NPY, 422, "invalid_input"),
        Case(
            "latent-too-large-to-decode",
            f"/v1/models/{m}/decode",
            latent_json([8, 600, 600]),
            JSON,
            413,
            "payload_too_large",
        ),
    ]


def _sequence_cases(m: str, t: Targets) -> list[Case]:
    p = f"/v1/models/{m}/encode"
    return [
        Case("non-utf8-json", p, b"\xff\xfe{", JSON, 400, "undecodable_body"),
        Case("broken-json", p, b'{"sequences": [[1, 2', JSON, 400, "undecodable_body"),
        Case("deeply-nested-json", p, b"[" * 50_000 + b"]" * 50_000, JSON, 400, "undecodable_body"),
        Case("nan", p, b'{"sequences": [[1, NaN, 3]]}', JSON, 422, "invalid_input"),
        Case("inf", p, b'{"sequences": [[1, -Infinity]]}', JSON, 422, "invalid_input"),
        Case("strings-in-series", p, seqs([[1, "two", 3]]), JSON, 422, "invalid_input"),
        Case("booleans-in-series", p, seqs([[True, False]]), JSON, 422, "invalid_input"),
        Case("null-series", p, seqs([None]), JSON, 422, "invalid_input"),
        Case("ragged-steps", p, seqs([[[1], [2, 3]]]), JSON, 422, "invalid_input"),
        Case("wrong-feature-count", p, seqs([[[1, 2], [3, 4]]]), JSON, 422, "invalid_input"),
        Case("empty-series", p, seqs([[1, 2], []]), JSON, 422, "invalid_input"),
        Case("empty-batch", p, seqs([]), JSON, 422, "invalid_input"),
        Case("very-long-series", p, seqs([[0.5] * (t.max_length + 1)]), JSON, 422, "invalid_input"),
        Case("oversized-batch", p, seqs([[1.0, 2.0]] * (t.max_batch + 1)), JSON, 422, "invalid_input"),
        Case("not-an-object", p, b"[1, 2, 3]", JSON, 422, "invalid_input"),
        Case("wrong-key", p, b'{"series": [[1, 2]]}', JSON, 422, "invalid_input"),
        Case("json-as-text-plain", p, seqs([[1, 2]]), "text/plain", 415, "unsupported_media_type"),
        Case("image-to-sequence-model", p, image_bytes(noise(8, 8)), PNG, 415, "unsupported_media_type"),
        Case(
            "decode-wrong-embedding-size",
            f"/v1/models/{m}/decode",
            json.dumps({"embeddings": [[0.0] * 3], "lengths": [10]}).encode(),
            JSON,
            422,
            "invalid_input",
        ),
        Case(
            "decode-negative-length",
            f"/v1/models/{m}/decode",
            json.dumps({"embeddings": [[0.0] * 3], "lengths": [-1]}).encode(),
            JSON,
            422,
            "invalid_input",
        ),
        Case("good-sequences", p, seqs([[0.1, 0.5, 0.9, 0.3], [1.0, 2.0]]), JSON, 200),
    ]


def _codec_cases(m: str, stream: bytes) -> list[Case]:
    p = f"/v1/models/{m}/decode"
    flipped = bytearray(stream)
    flipped[len(stream) // 2] ^= 0x01
    header, payload = unpack(stream)
    foreign = pack(replace(header, name="some-other-codec"), payload)  # well-formed, another model's
    return [
        Case("stream-empty", p, b"", STREAM, 400, "undecodable_body"),
        Case("stream-truncated", p, stream[: len(stream) // 2], STREAM, 400, "undecodable_body"),
        Case("stream-corrupted", p, bytes(flipped), STREAM, 400, "undecodable_body"),
        Case("stream-foreign", p, foreign, STREAM, 400, "undecodable_body"),
        Case("stream-random-bytes", p, np.random.default_rng(3).bytes(500), STREAM, 400, "undecodable_body"),
        Case("stream-as-png", p, stream, PNG, 415, "unsupported_media_type"),
        Case("stream-valid", p, stream, STREAM, 200),
    ]


def _routing_cases(t: Targets) -> list[Case]:
    cases = [
        Case("unknown-model", "/v1/models/no-such-model/encode", seqs([[1]]), JSON, 404, "not_found"),
        Case("unknown-route", "/v1/nothing", b"", None, 404, "not_found", method="GET"),
        Case("wrong-method", "/v1/models", b"", None, 405, "method_not_allowed", method="DELETE"),
    ]
    if t.sequence:
        cases.append(
            Case("unknown-version", f"/v1/models/{t.sequence}/versions/999/encode", seqs([[1]]), JSON, 404, "not_found")
        )
    if t.reconstruct_only:
        cases.append(
            Case(
                "unsupported-operation",
                f"/v1/models/{t.reconstruct_only}/encode",
                image_bytes(noise(8, 8)),
                PNG,
                409,
                "unsupported_operation",
            )
        )
    return cases


def build_cases(targets: Targets, encode_stream: Callable[[bytes], bytes] | None = None) -> list[Case]:
    """Every case for the targeted models; codec cases need a way to get one valid stream."""
    cases = _routing_cases(targets)
    if targets.image:
        cases += _image_cases(targets.image, targets)
    if targets.sequence:
        cases += _sequence_cases(targets.sequence, targets)
    if targets.codec and encode_stream is not None:
        cases += _codec_cases(targets.codec, encode_stream(image_bytes(noise(40, 56))))
    return cases


def main(out: Path) -> int:
    """Write the corpus (without codec streams, which need a running model) to a folder."""
    out.mkdir(parents=True, exist_ok=True)
    index = []
    for case in build_cases(Targets()):
        (out / f"{case.name}.bin").write_bytes(case.body)
        index.append(
            {
                "name": case.name,
                "method": case.method,
                "path": case.path,
                "content_type": case.content_type,
                "headers": case.headers,
                "status": case.status,
                "code": case.code,
                "body": f"{case.name}.bin",
            }
        )
    (out / "cases.json").write_text(json.dumps(index, indent=2) + "\n")
    print(f"wrote {len(index)} cases to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "corpus")))
