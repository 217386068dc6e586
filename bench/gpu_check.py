"""The GPU check of issue 20: CUDA really in use, GPU vs CPU parity, and throughput, in one run.

    python -m bench.gpu_check --out gpu-results            # on a GPU machine (scripts/gpu_check.sh)
    python -m bench.gpu_check --dry-run --out /tmp/dry     # anywhere: the CPU provider stands in

Steps, each written to OUT/gpu_check.json as it finishes (a run cut short keeps what it measured):
1. environment: ONNX Runtime's version and providers, `nvidia-smi`'s GPU line, cores;
2. providers: a session asking for CUDA must list it in `get_providers()` (ONNX Runtime falls back
   to CPU silently); without it the check stops, unless `--dry-run`;
3. parity: every graph of each served model (its highest version) on the device against the CPU
   provider on the same inputs; an fp16 variant against the fp32 graph on the CPU;
4. in process: images/s (series/s) of the engine alone, in batches, per workload, fp32 and fp16;
5. HTTP: `ae-serve` on the device, single-image requests at a fixed concurrency per workload
   (wrk when on PATH, else a Python client); then the CPU provider with 1, 4 and 16 workers.
OUT/gpu_check.md renders the JSON as the tables docs/benchmarks.md takes.

The dry run swaps CUDA for the CPU provider, shortens every timing and uses fewer workers, so the
whole path (sessions, I/O binding, fp16 graphs, servers, load, report) is exercised without a GPU.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from PIL import Image

from bench.client import Request, drive
from bench.inprocess import rate
from bench.load import LUA, Workload, run_wrk
from bench.net import free_port, http_get, service_command, spawned
from service.config import Settings
from service.engine import OnnxEngine
from service.gpu_memory import CUDA
from service.manifest import GRAY_PREFIX, ImageInputSpec, Manifest, load_manifest
from service.repository import latest_version_folder, version_folders

ROOT = Path(__file__).resolve().parents[1]
CPU = "CPUExecutionProvider"
# Single-image HTTP workloads and their in-process batch (what a GPU batcher forms under load).
IMAGE_SIDES = {64: 64, 256: 16, 1024: 1}
SEQUENCE_LENGTH, SEQUENCE_BATCH = 140, 64
LARGE_IMAGE_SECONDS = 5.0
# Beyond these, times max(1, |output|), the check fails: cuDNN's fp32 convolutions may use TF32 (a
# 10-bit mantissa, ~1e-3 relative) and other algorithms than the CPU's, so the device's fp32 answers
# differ by rounding; 1e-2 is well above rounding and well below a wrong kernel. fp16: the export's.
PARITY_LIMIT = 1e-2
FP16_PARITY_LIMIT = 2e-2


@dataclass(frozen=True)
class Plan:
    """How long and how wide the check runs."""

    device: str  # the provider under test
    seconds: float  # per in-process rate and per HTTP load run
    concurrency: int
    cpu_workers: list[int]
    gpu_workers: int


def _photo(side: int, width: int | None = None) -> np.ndarray:
    """A smooth synthetic RGB image in [0, 1] (no data set needed on a machine without network)."""
    y, x = np.mgrid[0:side, 0 : width or side] / side
    channels = [np.sin(6 * x + 2 * y), np.cos(5 * y - 3 * x), np.sin(4 * (x + y))]
    return ((np.stack(channels) + 1) / 2).astype(np.float32)


def _png(side: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray((np.moveaxis(_photo(side), 0, -1) * 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _series_body() -> bytes:
    steps = np.sin(np.linspace(0, 12, SEQUENCE_LENGTH)) + 0.1 * np.cos(np.linspace(0, 90, SEQUENCE_LENGTH))
    return json.dumps({"sequences": [steps.round(4).tolist()]}).encode()


def environment() -> dict[str, Any]:
    """What the check ran on."""
    smi = shutil.which("nvidia-smi")
    gpu = ""
    if smi:
        query = [smi, "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"]
        gpu = subprocess.run(query, capture_output=True, text=True, check=False).stdout.strip()
    return {
        "onnxruntime": ort.__version__,
        "available_providers": ort.get_available_providers(),
        "gpu": gpu or None,
        "cores": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }


def _engine(path: Path, provider: str) -> OnnxEngine:
    providers = [provider] if provider == CPU else [provider, CPU]
    return OnnxEngine(path, Settings(providers=providers, intra_op_threads=0), threads=0)


def check_provider(plan: Plan, models: Path) -> dict[str, Any]:
    """The providers a session asking for the device really got (raises when CUDA was asked and not granted)."""
    graph = latest_version_folder(models / "image-conv") / "encoder.onnx"
    granted = _engine(graph, plan.device).providers
    if plan.device not in granted:
        raise SystemExit(f"gpu check: asked for {plan.device}, ONNX Runtime granted {granted}; see its log above")
    return {"asked": plan.device, "granted": granted}


def _inputs(manifest: Manifest, role: str, folder: Path) -> dict[str, np.ndarray]:
    """One realistic input batch for a graph (a decoder's: its encoder's output on the same image)."""
    spec = manifest.input
    if isinstance(spec, ImageInputSpec):
        image = _photo(*(spec.fixed_size or (128, 128)))
        image = image[:1] if role.startswith(GRAY_PREFIX) or spec.channels == 1 else image
        feeds = {"image": np.stack([image, image[:, ::-1].copy()])}
        if role.removeprefix(GRAY_PREFIX) == "decoder":
            encoder = manifest.graphs[role.replace("decoder", "encoder")]  # type: ignore[index]
            latent = _engine(folder / encoder.file, CPU).run(feeds)["latent"]
            return {"latent": np.round(latent) if manifest.task == "compress" else latent}
        return feeds
    lengths = np.array([SEQUENCE_LENGTH, SEQUENCE_LENGTH // 2], np.int64)
    series = np.stack([np.sin(np.linspace(0, 12, SEQUENCE_LENGTH)), np.cos(np.linspace(0, 9, SEQUENCE_LENGTH))])
    feeds = {"sequences": series[..., None].astype(np.float32), "lengths": lengths}
    if role == "decoder":
        encoder = manifest.graphs["encoder"]
        return {"latent": _engine(folder / encoder.file, CPU).run(feeds)["latent"], "lengths": lengths}
    return feeds


def _difference(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    return max(float(np.abs(a[name] - b[name]).max()) for name in a)


def _scale(outputs: dict[str, np.ndarray]) -> float:
    """max(1, largest |output|): limits are relative to it, as the export's parity check is."""
    return max(1.0, *(float(np.abs(value).max()) for value in outputs.values()))


def parity(plan: Plan, models: Path) -> list[dict[str, Any]]:
    """Per served model and graph: |device - CPU| on the same inputs, and |fp16 on device - fp32 on CPU|."""
    rows = []
    for model_folder in sorted(p for p in models.iterdir() if p.is_dir() and version_folders(p)):
        folder = latest_version_folder(model_folder)
        manifest = load_manifest(folder)
        for role, graph in manifest.graphs.items():
            feeds = _inputs(manifest, role, folder)
            reference = _engine(folder / graph.file, CPU).run(feeds)
            row: dict[str, Any] = {"model": f"{manifest.name}/{manifest.version}", "graph": role}
            on_device = _engine(folder / graph.file, plan.device).run(feeds)
            row["fp32_max_abs_diff"] = _difference(on_device, reference)
            row["scale"] = _scale(reference)
            if manifest.task == "compress" and "latent" in reference:
                # A codec rounds its latent: a value the device rounds otherwise makes another stream
                # (both decode; the golden streams are the CPU's). Counted, not failed.
                flips = np.round(on_device["latent"]) != np.round(reference["latent"])
                row["rounding_flips"] = f"{int(flips.sum())} of {flips.size}"
            if manifest.fp16 is not None and role in manifest.fp16.graphs:
                half = _engine(folder / manifest.fp16.graphs[role].file, plan.device).run(feeds)
                row["fp16_max_abs_diff"] = _difference(half, reference)
                row["fp16_bound_at_export"] = manifest.fp16.parity_max_abs_diff[role]
            rows.append(row)
    return rows


def in_process(plan: Plan, models: Path) -> list[dict[str, Any]]:
    """Engine-only throughput per workload on the device, fp32 and (where a version has it) fp16."""
    rows = []
    image_folder = latest_version_folder(models / "image-conv")
    image = load_manifest(image_folder)
    for side, batch in IMAGE_SIDES.items():
        feeds = {"image": np.repeat(_photo(side)[None], batch, axis=0)}
        variants = {"fp32": image.graphs["autoencoder"].file}
        if image.fp16 is not None and "autoencoder" in image.fp16.graphs:
            variants["fp16"] = image.fp16.graphs["autoencoder"].file
        for precision, file in variants.items():
            engine = _engine(image_folder / file, plan.device)
            rows_per_s = rate(partial(engine.run, feeds), plan.seconds) * batch
            rows.append({"workload": f"image-conv reconstruct {side}x{side}", "batch": batch, precision: rows_per_s})
    series_folder = latest_version_folder(models / "ecg-embed")
    feeds = _inputs(load_manifest(series_folder), "encoder", series_folder)
    feeds = {name: np.resize(value, (SEQUENCE_BATCH, *value.shape[1:])) for name, value in feeds.items()}
    engine = _engine(series_folder / "encoder.onnx", plan.device)
    rows_per_s = rate(partial(engine.run, feeds), plan.seconds) * SEQUENCE_BATCH
    rows.append({"workload": f"ecg-embed encode {SEQUENCE_LENGTH}", "batch": SEQUENCE_BATCH, "fp32": rows_per_s})
    return _merged(rows)


def _merged(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per workload, its precisions side by side."""
    merged: dict[str, dict[str, Any]] = {}
    for row in rows:
        merged.setdefault(row["workload"], {}).update(row)
    return list(merged.values())


def _workloads() -> list[Workload]:
    images = [
        Workload(
            f"image-conv reconstruct {side}x{side}", _png(side), "image/png", "/v1/models/image-conv/reconstruct", ""
        )
        for side in IMAGE_SIDES
    ]
    series = Workload(
        f"ecg-embed encode {SEQUENCE_LENGTH}", _series_body(), "application/json", "/v1/models/ecg-embed/encode", ""
    )
    return [*images, series]


def _load(base: str, workload: Workload, plan: Plan, tmp: Path, concurrency: int) -> dict[str, Any]:
    """One fixed-concurrency run of single requests: wrk when installed, else the Python client."""
    # A 1024x1024 request takes about a second on one CPU core: a short run would end before any came back.
    seconds = max(plan.seconds, LARGE_IMAGE_SECONDS) if "1024" in workload.name else plan.seconds
    if shutil.which("wrk"):
        script, body = tmp / "post.lua", tmp / "body"
        script.write_text(LUA)
        url = base + workload.service_path
        return {"client": "wrk", **run_wrk(url, workload, concurrency, seconds, script, body)}
    request = Request(workload.name, workload.service_path, workload.body, workload.content_type)
    tally = asyncio.run(drive(base, lambda _: request, concurrency, seconds))
    ok = tally.statuses[200]
    latency = np.asarray(tally.latencies_ms.get(200, [np.nan]))
    return {
        "client": "python",
        "requests_per_s": ok / seconds,
        "p50_ms": round(float(np.percentile(latency, 50)), 2),
        "p99_ms": round(float(np.percentile(latency, 99)), 2),
        "errors": sum(tally.statuses.values()) - ok + sum(tally.client_errors.values()),
        "requests": sum(tally.statuses.values()),
    }


def _served(base: str) -> dict[str, Any]:
    """The providers and precision the server reports for image-conv's default version."""
    status, body = http_get(f"{base}/v1/models")
    if status != 200:
        raise SystemExit(f"gpu check: GET /v1/models answered {status}")
    model = next(m for m in json.loads(body)["models"] if m["name"] == "image-conv")
    version = next(v for v in model["versions"] if v["version"] == model["default_version"])
    return {"providers": version["providers"], "precision": version["precision"]}


def http(plan: Plan, models: Path, provider: str, workers: int) -> list[dict[str, Any]]:
    """Single-image (single-series) requests through `ae-serve` on `provider` with `workers` workers."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    providers = [provider] if provider == CPU else [provider, CPU]
    env = {"AE_PROVIDERS": json.dumps(providers), "AE_WORKERS": str(workers), "AE_LOG_LEVEL": "warning"}
    rows = []
    command = service_command(port, models)
    # Not quiet: the server's warnings and errors go to this run's output, where a failed start shows.
    with tempfile.TemporaryDirectory() as tmp, spawned(command, env, base, "/health/ready", quiet=False):
        served = _served(base)
        if served["providers"][0] != provider:
            raise SystemExit(f"gpu check: ae-serve asked for {provider} runs image-conv on {served['providers']}")
        for workload in _workloads():
            # On CPU workers a 1024x1024 image takes ~1 s: 64 in flight would outlast the client's timeout.
            large_on_cpu = provider == CPU and "1024" in workload.name
            concurrency = min(plan.concurrency, 2 * workers) if large_on_cpu else plan.concurrency
            result = _load(base, workload, plan, Path(tmp), concurrency)
            server = f"{provider} x{workers} workers ({served['precision']})"
            rows.append({"server": server, "workload": workload.name, "concurrency": concurrency, **result})
            print(f"http {provider} x{workers} {workload.name}: {result}", flush=True)
    return rows


def _number(value: float | None, form: str = ".2e") -> str:
    return "-" if value is None else format(value, form)


def render(report: dict[str, Any]) -> str:
    """The report as markdown tables."""
    lines = [f"# GPU check ({'dry run: CPU in place of CUDA' if report['dry_run'] else 'CUDA'})", ""]
    lines += [f"- {key}: {value}" for key, value in report["environment"].items()]
    lines += ["", f"Command: `{report['command']}`", "", "## Parity (max abs difference against the CPU provider)", ""]
    lines.append(
        "| model | graph | fp32 on device | fp16 on device | fp16 at export | output scale | latents rounded apart |"
    )
    lines.append("|---|---|---|---|---|---|---|")
    for row in report.get("parity", []):
        lines.append(
            f"| {row['model']} | {row['graph']} | {_number(row['fp32_max_abs_diff'])} | "
            f"{_number(row.get('fp16_max_abs_diff'))} | {_number(row.get('fp16_bound_at_export'))} | "
            f"{_number(row['scale'], '.3g')} | {row.get('rounding_flips', '-')} |"
        )
    lines += ["", "## In process (engine only; rows per second)", "", "| workload | batch | fp32 | fp16 |"]
    lines.append("|---|---|---|---|")
    for row in report.get("in_process", []):
        lines.append(f"| {row['workload']} | {row['batch']} | {row['fp32']:.0f} | {_number(row.get('fp16'), '.0f')} |")
    lines += ["", "## HTTP (single requests)", ""]
    lines += [
        "| server | workload | concurrency | client | req/s | p50 ms | p99 ms | errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in report.get("http", []):
        lines.append(
            f"| {row['server']} | {row['workload']} | {row['concurrency']} | {row['client']} | "
            f"{row['requests_per_s']:.0f} | {row['p50_ms']} | {row['p99_ms']} | {row['errors']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run the check; write OUT/gpu_check.json and OUT/gpu_check.md."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--models", type=Path, default=ROOT / "models")
    parser.add_argument("--dry-run", action="store_true", help="the CPU provider in place of CUDA, short runs")
    parser.add_argument("--seconds", type=float, default=None, help="per rate and load run (default 5; dry run 1)")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--cpu-workers", type=int, nargs="+", default=None, help="default 1 4 16; dry run 1 2")
    parser.add_argument("--gpu-workers", type=int, default=2, help="ae-serve workers sharing the GPU")
    args = parser.parse_args(argv)
    plan = Plan(
        device=CPU if args.dry_run else CUDA,
        seconds=args.seconds or (1.0 if args.dry_run else 5.0),
        concurrency=min(args.concurrency, 8) if args.dry_run else args.concurrency,
        cpu_workers=args.cpu_workers or ([1, 2] if args.dry_run else [1, 4, 16]),
        gpu_workers=1 if args.dry_run else args.gpu_workers,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "dry_run": args.dry_run,
        "command": "python -m bench.gpu_check " + " ".join(argv if argv is not None else sys.argv[1:]),
        "plan": plan.__dict__,
        "environment": environment(),
    }

    def save() -> None:
        (args.out / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n")
        (args.out / "gpu_check.md").write_text(render(report))

    save()
    report["providers"] = check_provider(plan, args.models)
    report["parity"] = parity(plan, args.models)
    save()
    report["in_process"] = in_process(plan, args.models)
    save()
    report["http"] = http(plan, args.models, plan.device, plan.gpu_workers)
    save()
    for workers in plan.cpu_workers:
        report["http"] += http(plan, args.models, CPU, workers)
        save()
    print(render(report))
    failed = problems(report)
    for problem in failed:
        print(f"gpu check: {problem}", file=sys.stderr)
    return 1 if failed else 0


def problems(report: dict[str, Any]) -> list[str]:
    """What makes a run fail: HTTP errors, a workload with no answers, parity beyond its limit, NaN."""
    found = []
    for row in report["http"]:
        if row["errors"] or not row["requests"]:
            found.append(f"{row['server']} {row['workload']}: {row['requests']} answers, {row['errors']} errors")
    for row in report["parity"]:
        if not row["fp32_max_abs_diff"] <= PARITY_LIMIT * row["scale"]:  # NaN too
            found.append(f"{row['model']} {row['graph']}: device differs from CPU by {row['fp32_max_abs_diff']:.3g}")
        if "fp16_max_abs_diff" in row and not row["fp16_max_abs_diff"] <= FP16_PARITY_LIMIT * row["scale"]:
            found.append(f"{row['model']} {row['graph']}: fp16 differs from fp32 by {row['fp16_max_abs_diff']:.3g}")
    return found


if __name__ == "__main__":
    raise SystemExit(main())
