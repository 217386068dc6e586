"""`/v2` (Open Inference Protocol, binary tensors) beside `/v1`, with wrk, on one service, interleaved.

    python -m bench.oip_load --duration 10 --rounds 3

The same two workloads through both dialects of one `ae-serve` (default models): a 64x64 PNG crop of a
photo through image-conv's reconstruct (`/v1`: the PNG as the body; `/v2`: one BYTES element, binary),
and one ECG beat (140 steps) through ecg-embed's encode (`/v1`: JSON; `/v2`: FP32 [1, 140, 1] binary,
binary outputs asked for, as tritonclient does by default). For each round, workload and concurrency,
wrk runs `/v1` and `/v2` back to back (order alternating by round); each cell is the median over the
rounds. The table replaces its own section at the end of docs/benchmarks.md; the runs go to
docs/oip_benchmarks.json.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import struct
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bench.load import DATA, LUA, ROOT, Cell, Workload, machine, medians, run_wrk, wait_idle
from bench.net import free_port, service_command, spawned

SECTION = "## Open Inference Protocol (`/v2`) beside `/v1`"


def _binary(header: dict[str, Any], blob: bytes) -> tuple[bytes, int]:
    text = json.dumps(header).encode()
    return text + blob, len(text)


def workload_pairs() -> list[tuple[Workload, Workload]]:
    """(/v1, /v2) for the 64x64 image and the sequence workload."""
    photo = Image.open(sorted((DATA / "images" / "bsds400").glob("*.jpg"))[0]).convert("RGB")
    buffer = io.BytesIO()
    photo.crop((0, 0, 64, 64)).save(buffer, format="PNG")
    png = buffer.getvalue()
    element = struct.pack("<I", len(png)) + png
    image_header = {
        "inputs": [
            {"name": "image", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": len(element)}}
        ]
    }
    image_body, image_json = _binary(image_header, element)
    beat = [
        float(v) for v in (DATA / "sequences" / "ecg5000" / "ECG5000_TRAIN.txt").read_text().split("\n")[0].split()[1:]
    ]
    raw = np.asarray(beat, "<f4").tobytes()
    sequence_header = {
        "inputs": [
            {
                "name": "sequences",
                "datatype": "FP32",
                "shape": [1, len(beat), 1],
                "parameters": {"binary_data_size": len(raw)},
            }
        ],
        "parameters": {"binary_data_output": True},
    }
    sequence_body, sequence_json = _binary(sequence_header, raw)
    octet = "application/octet-stream"
    return [
        (
            Workload("image reconstruct 64x64", png, "image/png", "/v1/models/image-conv/reconstruct", ""),
            Workload(
                "image reconstruct 64x64", image_body, octet, "/v2/models/image-conv.reconstruct/infer", "", image_json
            ),
        ),
        (
            Workload(
                "sequence encode 140",
                json.dumps({"sequences": [beat]}).encode(),
                "application/json",
                "/v1/models/ecg-embed/encode",
                "",
            ),
            Workload(
                "sequence encode 140", sequence_body, octet, "/v2/models/ecg-embed.encode/infer", "", sequence_json
            ),
        ),
    ]


def paired_change(report: dict, workload: str, concurrency: int) -> float:
    """The median over rounds of /v2's rate relative to /v1's in the same round (back to back).

    This VM's speed drifts between rounds (the same cell has measured 660 and 1120 req/s), so the
    ratio within a round says more than the ratio of the two medians.
    """
    runs = [r for r in report["runs"] if r["workload"] == workload and r["concurrency"] == concurrency]
    v1 = [r["requests_per_s"] for r in runs if r["server"] == "v1"]
    v2 = [r["requests_per_s"] for r in runs if r["server"] == "v2"]
    return statistics.median(b / a - 1 for a, b in zip(v1, v2, strict=True))


def render(report: dict) -> str:
    """The section of docs/benchmarks.md: one row per workload and concurrency, `/v2` relative to `/v1`."""
    cells = {(c["workload"], c["concurrency"], c["server"]): c for c in report["cells"]}
    lines = [
        SECTION,
        "",
        f"Command: `{report['command']}` ({report['rounds']} interleaved rounds of {report['duration_s']:g} s, "
        f"median per cell; {report['machine']['cores']} cores, {report['machine']['cpu']}).",
        "",
        "| workload | concurrency | /v1 req/s | /v2 req/s | /v2 vs /v1 (same round, median) "
        "| /v1 p50 ms | /v2 p50 ms | /v1 p99 ms | /v2 p99 ms | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (workload, concurrency, server), v1 in cells.items():
        if server != "v1":
            continue
        v2 = cells[(workload, concurrency, "v2")]
        ratio = paired_change(report, workload, concurrency)
        lines.append(
            f"| {workload} | {concurrency} | {v1['requests_per_s']:.0f} | {v2['requests_per_s']:.0f} | {ratio:+.1%} | "
            f"{v1['p50_ms']:.2f} | {v2['p50_ms']:.2f} | {v1['p99_ms']:.2f} | {v2['p99_ms']:.2f} | "
            f"{v1['errors'] + v2['errors']} |"
        )
    lines += [
        "",
        "Rates and latencies are medians over the rounds; the change pairs `/v1` and `/v2` run back to back in",
        "the same round, since this VM's speed drifts between rounds (every run is in docs/oip_benchmarks.json).",
        "`/v2` sends the image as one BYTES element and the series as FP32 binary data, outputs binary.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and write the report."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    parser.add_argument("--render-only", action="store_true", help="rewrite the table from OUT/oip_benchmarks.json")
    args = parser.parse_args(argv)
    if args.render_only:
        write_section(args.out, json.loads((args.out / "oip_benchmarks.json").read_text()))
        return 0
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cells: list[Cell] = []
    env = {"AE_PROVIDERS": '["CPUExecutionProvider"]'}
    with (
        tempfile.TemporaryDirectory() as tmp,
        spawned(service_command(port, ROOT / "models"), env, base, "/health/ready") as process,
    ):
        script, body = Path(tmp) / "post.lua", Path(tmp) / "body"
        script.write_text(LUA)
        for round_index in range(args.rounds):
            for pair in workload_pairs():
                for concurrency in args.concurrency:
                    order = list(zip(("v1", "v2"), pair, strict=True))
                    for server, workload in order[:: 1 if round_index % 2 == 0 else -1]:
                        wait_idle([process.pid])
                        result = run_wrk(
                            base + workload.service_path, workload, concurrency, args.duration, script, body
                        )
                        cells.append(Cell(workload.name, concurrency, server, **result))
                        print(f"r{round_index} {workload.name:26s} c={concurrency:<3d} {server} {result}", flush=True)
    report = {
        "machine": machine(),
        "duration_s": args.duration,
        "rounds": args.rounds,
        "runs": [asdict(c) for c in cells],
        "cells": [asdict(c) for c in medians(cells)],
        "command": "python -m bench.oip_load " + " ".join(argv or sys.argv[1:]),
    }
    (args.out / "oip_benchmarks.json").write_text(json.dumps(report, indent=2) + "\n")
    write_section(args.out, report)
    return 0


def write_section(out: Path, report: dict) -> None:
    """Replace this benchmark's section at the end of OUT/benchmarks.md (the rest is kept)."""
    target = out / "benchmarks.md"
    text = target.read_text() if target.exists() else ""
    kept = text[: text.index(SECTION)].rstrip() + "\n\n" if SECTION in text else text.rstrip() + "\n\n"
    target.write_text(kept + render(report))


if __name__ == "__main__":
    raise SystemExit(main())
