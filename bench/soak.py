"""Soak: mixed operations at concurrency 64 for a while; no 5xx, bounded memory.

    python -m bench.soak --seconds 180 --out docs

Every request is chosen round-robin from a mix of good and deliberately bad requests on the
default models. Reports counts per status, unexpected answers (anything but the expected status
or a deliberate 503), latency percentiles, and the server's RSS sampled through the run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.client import Request, drive, rss_mb
from bench.corpus import image_bytes, latent_json, noise, seqs
from bench.net import free_port, service_command, spawned

ROOT = Path(__file__).resolve().parents[1]


def mix(models: Path) -> list[Request]:
    """Good and bad requests over every default model that is present."""
    beat = [float(np.sin(i / 7.0)) for i in range(140)]
    requests = [
        Request(
            "image reconstruct", "/v1/models/image-conv/reconstruct", image_bytes(noise(64, 64, seed=1)), "image/png"
        ),
        Request(
            "image reconstruct odd",
            "/v1/models/image-conv/reconstruct",
            image_bytes(noise(37, 91, seed=2)),
            "image/png",
        ),
        Request("image encode", "/v1/models/image-conv/encode", image_bytes(noise(48, 48, seed=3)), "image/png"),
        Request("image decode", "/v1/models/image-conv/decode", latent_json([8, 6, 6], 0.5), "application/json"),
        Request("sequence encode", "/v1/models/ecg-embed/encode", seqs([beat, beat[:50]]), "application/json"),
        Request("anomaly reconstruct", "/v1/models/ecg-anomaly/reconstruct", seqs([beat]), "application/json"),
        Request("bad image", "/v1/models/image-conv/reconstruct", b"not a png", "image/png", expect=400),
        Request("bad series", "/v1/models/ecg-embed/encode", seqs([[1, "x"]]), "application/json", expect=422),
        Request("unknown model", "/v1/models/nope/encode", seqs([[1.0]]), "application/json", expect=404),
    ]
    if (models / "image-codec-q2").is_dir():
        requests.append(
            Request(
                "codec reconstruct",
                "/v1/models/image-codec-q2/reconstruct",
                image_bytes(noise(64, 64, seed=4)),
                "image/png",
            )
        )
    if (models / "image-denoise").is_dir():
        requests.append(
            Request("denoise", "/v1/models/image-denoise/reconstruct", image_bytes(noise(64, 64, seed=5)), "image/png")
        )
    return requests


async def soak(base: str, pid: int, requests: list[Request], concurrency: int, seconds: float) -> dict[str, Any]:
    """Drive the mix while sampling RSS every few seconds."""
    samples: list[tuple[float, float]] = []
    started = time.monotonic()

    async def sample() -> None:
        while time.monotonic() - started < seconds:
            samples.append((round(time.monotonic() - started, 1), round(rss_mb(pid), 1)))
            await asyncio.sleep(5)

    tally, _ = await asyncio.gather(drive(base, lambda i: requests[i % len(requests)], concurrency, seconds), sample())
    samples.append((round(time.monotonic() - started, 1), round(rss_mb(pid), 1)))
    warm = [rss for t, rss in samples if t >= min(30.0, seconds / 3)] or [samples[-1][1]]
    return {
        "concurrency": concurrency,
        "seconds": seconds,
        **tally.summary(),
        "rss_mb": {
            "start": samples[0][1],
            "after_warmup": warm[0],
            "end": samples[-1][1],
            "max": max(r for _, r in samples),
            "growth_after_warmup": round(samples[-1][1] - warm[0], 1),
            "samples": samples,
        },
    }


def main(argv: list[str] | None = None) -> int:
    """Run the soak and write docs/soak.json and docs/soak.md."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    args = parser.parse_args(argv)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    models = ROOT / "models"
    with spawned(
        # One worker, so the RSS sampled is the process that serves (not a supervisor).
        service_command(port, models),
        {"AE_PROVIDERS": '["CPUExecutionProvider"]', "AE_WORKERS": "1"},
        base,
        "/health/ready",
    ) as process:
        report = asyncio.run(soak(base, process.pid, mix(models), args.concurrency, args.seconds))
    report["command"] = "python -m bench.soak " + " ".join(argv if argv is not None else sys.argv[1:])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "soak.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "rss_mb"}, indent=2))
    print("rss_mb:", {k: v for k, v in report["rss_mb"].items() if k != "samples"})
    server_errors = sum(n for s, n in report["statuses"].items() if s.startswith("5") and s != "503")
    return 1 if server_errors or report["unexpected"] or report["client_errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
