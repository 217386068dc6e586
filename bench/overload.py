"""Overload: far beyond capacity, excess requests get quick 503s, and the service recovers.

    python -m bench.overload --out docs

Phase 1 drives 256 concurrent image requests at a service whose queue holds 16 per graph: requests
beyond the queue must be answered 503 `overloaded` quickly (not time out). Phase 2 drops to 4
concurrent requests: everything must succeed again.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from bench.client import Request, drive
from bench.corpus import image_bytes, noise
from bench.net import free_port, service_command, spawned

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    """Run both phases; write docs/overload.json; exit 1 if an expectation fails."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the overload phase")
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    args = parser.parse_args(argv)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    request = Request(
        "image reconstruct 256", "/v1/models/image-conv/reconstruct", image_bytes(noise(256, 256, seed=7)), "image/png"
    )
    # One worker: the queue bound under test is per process.
    env = {
        "AE_PROVIDERS": '["CPUExecutionProvider"]',
        "AE_WORKERS": "1",
        "AE_MAX_QUEUE": "16",
        "AE_REQUEST_TIMEOUT_S": "10",
    }
    with spawned(service_command(port, ROOT / "models"), env, base, "/health/ready"):
        overload = asyncio.run(drive(base, lambda i: request, args.concurrency, args.seconds, timeout_s=30.0))
        recovery = asyncio.run(drive(base, lambda i: request, 4, 10.0, timeout_s=30.0))
    report = {
        "command": "python -m bench.overload " + " ".join(argv if argv is not None else sys.argv[1:]),
        "overload": {"concurrency": args.concurrency, "seconds": args.seconds, **overload.summary()},
        "recovery": {"concurrency": 4, "seconds": 10.0, **recovery.summary()},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "overload.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    shed = overload.statuses.get(503, 0)
    recovered = set(recovery.statuses) == {200}
    return 0 if shed and recovered and not overload.client_errors else 1


if __name__ == "__main__":
    sys.exit(main())
