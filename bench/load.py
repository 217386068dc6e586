"""Load benchmark: the service against the plain baseline, with wrk, on loopback, interleaved.

    python -m bench.load --duration 10 --rounds 3 --out docs

1. Start the service (default models) and the baseline (bench/baseline_app.py, same ONNX graphs; its
   sha256 goes into the report, so a changed baseline shows).
2. For each round, workload (image reconstruct 64x64 and 256x256 PNG crops of a photo, sequence encode
   of length 140) and concurrency (1, 8, 32, 64): run wrk against both servers back to back, the
   order alternating by round. Each cell reports the median over the rounds.
3. Measure in process, single-threaded: ONNX Runtime alone, and decode + infer + encode (the
   pipeline). The two-core limit is twice the pipeline rate. Also the denoiser's cost per 256x256 photo.
4. Write docs/benchmarks.md (table, machine, command) and docs/benchmarks.json.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from PIL import Image

from bench.inprocess import measure_denoiser, measure_limits
from bench.net import free_port, service_command, spawned
from service.repository import latest_version_folder

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("AE_DATASETS", ROOT.parent / "shared" / "datasets"))
CONCURRENCY = (1, 8, 32, 64)
ANALYSIS = "## What limits these numbers"
LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = os.getenv("WRK_CONTENT_TYPE")
local f = assert(io.open(os.getenv("WRK_BODY"), "rb"))
wrk.body = f:read("*all")
f:close()
local json_length = os.getenv("WRK_HEADER_LENGTH")
if json_length and json_length ~= "" then wrk.headers["Inference-Header-Content-Length"] = json_length end
"""


@dataclass
class Workload:
    """One request shape, with the paths that serve it on each server."""

    name: str
    body: bytes
    content_type: str
    service_path: str
    baseline_path: str
    # OIP's binary-tensor extension: the length of the body's JSON part (`Inference-Header-Content-Length`).
    header_length: int | None = None


@dataclass
class Cell:
    """wrk's numbers for one workload, concurrency and server."""

    workload: str
    concurrency: int
    server: str
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int


def workloads() -> list[Workload]:
    """PNG crops of a real photo and a real ECG beat."""
    photo = Image.open(sorted((DATA / "images" / "bsds400").glob("*.jpg"))[0]).convert("RGB")
    items = []
    for size in (64, 256):
        buffer = io.BytesIO()
        photo.crop((0, 0, size, size)).save(buffer, format="PNG")
        items.append(
            Workload(
                f"image reconstruct {size}x{size}",
                buffer.getvalue(),
                "image/png",
                "/v1/models/image-conv/reconstruct",
                "/reconstruct",
            )
        )
    beat = (DATA / "sequences" / "ecg5000" / "ECG5000_TRAIN.txt").read_text().splitlines()[0].split()[1:]
    body = json.dumps({"sequences": [[float(v) for v in beat]]}).encode()
    items.append(Workload("sequence encode 140", body, "application/json", "/v1/models/ecg-embed/encode", "/encode"))
    return items


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_wrk(url: str, workload: Workload, concurrency: int, duration: float, script: Path, body: Path) -> dict:
    """One wrk run; returns req/s, p50, p99, errors and request count."""
    body.write_bytes(workload.body)
    threads = min(2, concurrency)
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{concurrency}",
            f"-d{max(1, round(duration))}s",
            "--latency",
            "--timeout",
            "10s",
            "-s",
            str(script),
            url,
        ],
        env={
            **os.environ,
            "WRK_BODY": str(body),
            "WRK_CONTENT_TYPE": workload.content_type,
            "WRK_HEADER_LENGTH": "" if workload.header_length is None else str(workload.header_length),
        },
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50_ms": _ms(re.search(r"^\s*50%\s+(\S+)", out, re.M).group(1)),  # type: ignore[union-attr]
        "p99_ms": _ms(re.search(r"^\s*99%\s+(\S+)", out, re.M).group(1)),  # type: ignore[union-attr]
        "errors": (int(non_2xx.group(1)) if non_2xx else 0) + (sum(map(int, socket.groups())) if socket else 0),
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),  # type: ignore[union-attr]
    }


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def process_tree(pid: int) -> list[int]:
    """A process and all its descendants (a server's worker processes)."""
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        for children in Path(f"/proc/{current}/task").glob("*/children"):
            pending += [int(child) for child in children.read_text().split()]
    return found


def wait_idle(pids: list[int], window_s: float = 0.5, max_wait_s: float = 60.0) -> None:
    """Block until the processes and their workers together use under 5% of a core over `window_s`."""
    ticks_per_s = os.sysconf("SC_CLK_TCK")
    deadline = time.monotonic() + max_wait_s
    tree = [p for pid in pids for p in process_tree(pid)]
    while time.monotonic() < deadline:
        before = sum(_cpu_ticks(p) for p in tree)
        time.sleep(window_s)
        if (sum(_cpu_ticks(p) for p in tree) - before) / ticks_per_s < 0.05 * window_s:
            return


def latest(models: Path, name: str) -> str:
    """`name/VERSION` of the highest version: the one the service serves by default."""
    return f"{name}/{latest_version_folder(models / name).name}"


def baseline_env(models: Path) -> dict[str, str]:
    """The baseline serves exactly the graphs the service serves by default."""
    return {
        "AE_BASELINE_MODELS": str(models),
        "AE_BASELINE_IMAGE_MODEL": latest(models, "image-conv"),
        "AE_BASELINE_SEQUENCE_MODEL": latest(models, "ecg-embed"),
    }


def machine() -> dict[str, str]:
    """What the numbers were measured on."""
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {"cpu": cpu, "cores": str(os.cpu_count()), "python": platform.python_version(), "kernel": platform.release()}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write the report."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    parser.add_argument("--concurrency", type=int, nargs="+", default=list(CONCURRENCY))
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; each cell reports their median")
    parser.add_argument("--only", nargs="+", default=None, help="workloads whose name contains one of these")
    parser.add_argument("--models", type=Path, default=ROOT / "models", help="model repository for both servers")
    parser.add_argument(
        "--service-env", action="append", default=[], metavar="AE_X=VALUE", help="service setting for a sweep"
    )
    args = parser.parse_args(argv)
    items = [w for w in workloads() if args.only is None or any(part in w.name for part in args.only)]
    limits = measure_limits(args.models, items)
    denoiser = measure_denoiser(args.models, workloads()[1].body) if args.only is None else None
    service_port, baseline_port = free_port(), free_port()
    service_cmd = service_command(service_port, args.models)
    baseline_cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "bench.baseline_app:app",
        "--port",
        str(baseline_port),
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    # The service's settings come from the environment (AE_*) so tuning runs need no code change.
    service_env = {"AE_PROVIDERS": '["CPUExecutionProvider"]', **dict(kv.split("=", 1) for kv in args.service_env)}
    cells: list[Cell] = []
    ours, baseline = f"http://127.0.0.1:{service_port}", f"http://127.0.0.1:{baseline_port}"
    with (
        tempfile.TemporaryDirectory() as tmp,
        spawned(service_cmd, service_env, ours, "/health/ready") as service_process,
        spawned(baseline_cmd, baseline_env(args.models), baseline, "/docs") as baseline_process,
    ):
        pids = [service_process.pid, baseline_process.pid]
        script, body = Path(tmp) / "post.lua", Path(tmp) / "body"
        script.write_text(LUA)
        for round_index in range(args.rounds):
            servers = [("service", ours, "service_path"), ("baseline", baseline, "baseline_path")]
            for workload in items:
                for concurrency in args.concurrency:
                    # Interleaved: the two servers run back to back for each cell, so drift hits both; the
                    # order alternates by round, so neither always runs on the warmer machine.
                    for name, base, path in servers[:: 1 if round_index % 2 == 0 else -1]:
                        # A server keeps working off its backlog after wrk stops; start on an idle machine.
                        wait_idle(pids)
                        url = f"{base}{getattr(workload, path)}"
                        result = run_wrk(url, workload, concurrency, args.duration, script, body)
                        cells.append(Cell(workload.name, concurrency, name, **result))
                        print(f"r{round_index} {workload.name:28s} c={concurrency:<3d} {name:9s} {result}", flush=True)
    report = {
        "machine": machine(),
        "duration_s": args.duration,
        "rounds": args.rounds,
        "baseline_sha256": hashlib.sha256((ROOT / "bench" / "baseline_app.py").read_bytes()).hexdigest(),
        "limits": limits,
        "denoiser": denoiser,
        "runs": [asdict(c) for c in cells],
        "cells": [asdict(c) for c in medians(cells)],
        "command": "python -m bench.load " + " ".join(argv or sys.argv[1:]),
        "service_env": service_env,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "benchmarks.json").write_text(json.dumps(report, indent=2) + "\n")
    target = args.out / "benchmarks.md"
    # The hand-written analysis below the generated tables survives a re-run.
    previous = target.read_text() if target.exists() else ""
    analysis = previous[previous.index(ANALYSIS) :] if ANALYSIS in previous else ""
    target.write_text(render(report) + ("\n" + analysis if analysis else ""))
    return 0


def medians(cells: list[Cell]) -> list[Cell]:
    """One cell per (workload, concurrency, server): the median of each number over the rounds."""
    groups: dict[tuple[str, int, str], list[Cell]] = {}
    for cell in cells:
        groups.setdefault((cell.workload, cell.concurrency, cell.server), []).append(cell)
    return [
        Cell(
            workload,
            concurrency,
            server,
            statistics.median(c.requests_per_s for c in runs),
            statistics.median(c.p50_ms for c in runs),
            statistics.median(c.p99_ms for c in runs),
            sum(c.errors for c in runs),
            sum(c.requests for c in runs),
        )
        for (workload, concurrency, server), runs in groups.items()
    ]


def render(report: dict) -> str:
    """The markdown table: per cell req/s, p50, p99, errors, ratio to baseline, fraction of the limit."""
    cells = report["cells"]
    lines = [
        "# Load benchmark",
        "",
        f"Command: `{report['command']}` (wrk on loopback, {report['duration_s']:g} s per "
        f"run, service and baseline interleaved per cell, median of {report['rounds']} rounds; errors and "
        "requests are summed over the rounds).",
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in report["machine"].items()) + ".",
        "",
        f"Baseline: `bench/baseline_app.py`, sha256 `{report['baseline_sha256']}`.",
        "",
        "## In-process limits (single thread)",
        "",
        "| Workload | ONNX Runtime only (req/s) | decode + infer + encode (req/s) | two-core limit (req/s) |",
        "|---|---|---|---|",
    ]
    for name, limit in report["limits"].items():
        lines.append(
            f"| {name} | {limit['onnx_only_per_s']:.0f} | {limit['pipeline_per_s']:.0f} | "
            f"{2 * limit['pipeline_per_s']:.0f} |"
        )
    if report.get("denoiser"):
        d = report["denoiser"]
        lines += [
            "",
            f"Denoiser ({d['model']}) per 256x256 photo crop, one thread: ONNX Runtime {d['onnx_ms']:.0f} ms, "
            f"decode + infer + encode {d['pipeline_ms']:.0f} ms.",
        ]
    lines += [
        "",
        "## Service vs baseline",
        "",
        "| Workload | Concurrency | Service req/s | Baseline req/s | Ratio | Service p50 / p99 (ms) | "
        "Baseline p50 / p99 (ms) | Errors (service / baseline) | Fraction of limit |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for ours in (c for c in cells if c["server"] == "service"):
        base = next(
            c
            for c in cells
            if c["server"] == "baseline"
            and c["workload"] == ours["workload"]
            and c["concurrency"] == ours["concurrency"]
        )
        limit = 2 * report["limits"][ours["workload"]]["pipeline_per_s"]
        lines.append(
            f"| {ours['workload']} | {ours['concurrency']} | {ours['requests_per_s']:.0f} | "
            f"{base['requests_per_s']:.0f} | {ours['requests_per_s'] / base['requests_per_s']:.2f}x | "
            f"{ours['p50_ms']:.1f} / {ours['p99_ms']:.1f} | {base['p50_ms']:.1f} / {base['p99_ms']:.1f} | "
            f"{ours['errors']} / {base['errors']} | {ours['requests_per_s'] / limit:.0%} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
