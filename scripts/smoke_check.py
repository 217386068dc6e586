"""Send a real image and a real sequence to a running service and check the answers (stdlib only).

python3 scripts/smoke_check.py http://127.0.0.1:8000
"""

from __future__ import annotations

import json
import struct
import sys
import urllib.request
import zlib


def _png(width: int, height: int) -> bytes:
    """A small RGB gradient PNG, written with zlib so no imaging library is needed."""
    # Each row: filter byte 0, then RGB triples.
    rows = b"".join(
        b"\x00" + bytes(v for x in range(width) for v in (x * 255 // width, y * 255 // height, 128))
        for y in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def _post(url: str, body: bytes, content_type: str) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=body, headers={"content-type": content_type}, method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, dict(response.headers), response.read()


def main(base: str) -> int:
    """Check readiness, then one image and one sequence round trip; 0 when every answer is right."""
    with urllib.request.urlopen(f"{base}/health/ready", timeout=10) as response:
        print("ready:", response.read().decode())
    models = json.loads(urllib.request.urlopen(f"{base}/v1/models", timeout=10).read())
    print("models:", [(m["name"], m["versions"][-1]["providers"]) for m in models["models"]])

    status, headers, body = _post(f"{base}/v1/models/image-conv/reconstruct", _png(45, 31), "image/png")
    width, height = struct.unpack(">II", body[16:24])
    print(f"image reconstruct: {status} {headers['content-type']} {width}x{height} ({len(body)} bytes)")
    assert status == 200 and body[:8] == b"\x89PNG\r\n\x1a\n" and (width, height) == (45, 31)

    beat = [float(v) for v in range(-20, 20)] + [float(v) for v in range(20, -20, -1)]
    status, _, body = _post(
        f"{base}/v1/models/ecg-embed/encode", json.dumps({"sequences": [beat]}).encode(), "application/json"
    )
    embeddings = json.loads(body)["embeddings"]
    print(f"sequence encode: {status}, {len(embeddings)} embedding of {len(embeddings[0])} numbers")
    assert status == 200 and len(embeddings) == 1 and len(embeddings[0]) > 0

    status, _, body = _post(
        f"{base}/v1/models/ecg-anomaly/reconstruct", json.dumps({"sequences": [beat]}).encode(), "application/json"
    )
    answer = json.loads(body)
    print(f"sequence reconstruct: {status}, error {answer['errors'][0]:.4f}")
    assert status == 200 and len(answer["reconstructions"][0]) == len(beat)
    print("smoke check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8000"))
