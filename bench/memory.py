"""Peak memory of each committed image graph against the padded pixel count, and a linear fit.

    nice -n 10 python -m bench.memory [--sides 256 512 1024 1536] [--out docs/memory.json]

Every image graph (encoder / decoder / autoencoder) of every version the committed `models/policy.toml`
loads runs in a fresh subprocess through the service's own `OnnxEngine`, so with the service's ONNX
Runtime memory settings. For each square side the child resets its RSS high-water mark (`VmHWM`, via
`/proc/self/clear_refs`), builds the input (an image, or the decoder's latent for that image) and runs
the graph once: `peak` is the high-water mark above the RSS before the input existed, `held` what is
still resident after the run. A least-squares line `peak = slope * padded pixels + constant` is fitted
per graph; the steepest graph is what `service.memory_budget` uses to derive `AE_MAX_IMAGE_PIXELS`.
A last child loads the whole committed repository the way a worker does and reports its warm RSS.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

import numpy as np

from bench.net import process_status_bytes
from service.manifest import GraphRole, ImageInputSpec, Manifest, load_manifest

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
MB = 1024 * 1024


def _status(field: str) -> int:
    """A field of /proc/self/status (VmRSS, VmHWM) in bytes."""
    value = process_status_bytes("self", field)
    if value is None:
        raise RuntimeError(f"no {field} in /proc/self/status")
    return value


def _image_input(manifest: Manifest) -> ImageInputSpec:
    if not isinstance(manifest.input, ImageInputSpec):
        raise TypeError(f"{manifest.name} is not an image model")
    return manifest.input


def _feeds(manifest: Manifest, graph: GraphRole, side: int) -> dict[str, np.ndarray]:
    """The input of `graph` for a `side` x `side` image (sides are multiples of every stride here)."""
    if graph != "decoder":
        channels = _image_input(manifest).channels
        return {"image": np.random.default_rng(0).random((1, channels, side, side), np.float32)}
    latent_channels = int(manifest.latent.shape[0])
    cells = side // (manifest.latent.downsample or 1)
    return {"latent": np.random.default_rng(0).standard_normal((1, latent_channels, cells, cells), np.float32)}


def child_graph(folder: Path, graph: GraphRole, sides: list[int]) -> None:
    """Measure one graph at each side; one JSON line per side on stdout."""
    from service.config import Settings
    from service.engine import OnnxEngine

    manifest = load_manifest(folder)
    settings = Settings(providers=["CPUExecutionProvider"], intra_op_threads=1, max_image_pixels=1)
    engine = OnnxEngine(folder / manifest.graphs[graph].file, settings, threads=1)
    engine.run(_feeds(manifest, graph, _image_input(manifest).stride_multiple))
    for side in sides:
        before = _status("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        feeds = _feeds(manifest, graph, side)
        outputs = engine.run(feeds)
        peak = _status("VmHWM") - before
        del feeds, outputs
        print(json.dumps({"side": side, "peak_bytes": peak, "held_bytes": _status("VmRSS") - before}), flush=True)


def child_worker() -> None:
    """Load the committed repository like a worker does and print its warm RSS."""
    from service.config import Settings
    from service.repository import ModelRepository

    ModelRepository.load(Settings(repository=MODELS, providers=["CPUExecutionProvider"], max_image_pixels=1))
    print(json.dumps({"worker_warm_bytes": _status("VmRSS")}))


def image_graphs() -> list[tuple[Path, GraphRole]]:
    """(version folder, graph) of every image graph the committed policy loads; fixed-size models skipped."""
    from service.policy import POLICY_FILE, load_policy
    from service.repository import version_folders

    policy = load_policy(MODELS / POLICY_FILE, required=False)
    found: list[tuple[Path, GraphRole]] = []
    for model in sorted(p for p in MODELS.iterdir() if p.is_dir()):
        folders = version_folders(model)
        latest = load_manifest(folders[-1])
        if not isinstance(latest.input, ImageInputSpec) or latest.input.fixed_size is not None:
            continue
        chosen = policy.rule_for(model.name, latest.task).select([int(f.name) for f in folders])
        for folder in folders:
            if int(folder.name) in chosen:
                found += [(folder, graph) for graph in load_manifest(folder).graphs]
    return found


def fit(points: list[dict[str, int]]) -> dict[str, float]:
    """Least-squares line through (padded pixels, peak bytes)."""
    x = np.array([p["padded_pixels"] for p in points], float)
    y = np.array([p["peak_bytes"] for p in points], float)
    slope, constant = np.polyfit(x, y, 1)
    residual = y - (slope * x + constant)
    r2 = 1 - float(residual @ residual) / float(((y - y.mean()) ** 2).sum()) if len(points) > 2 else 1.0
    return {"bytes_per_padded_pixel": round(float(slope), 2), "constant_bytes": int(constant), "r2": round(r2, 4)}


def _run_child(args: list[str]) -> list[dict[str, Any]]:
    command = [sys.executable, "-m", "bench.memory", *args]
    output = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT).stdout
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def measure(sides: list[int]) -> dict[str, Any]:
    """Every graph in its own process, then the worker's warm RSS."""
    graphs: list[dict[str, Any]] = []
    for folder, graph in image_graphs():
        points = _run_child(["--child", str(folder), graph, "--sides", *map(str, sides)])
        for point in points:
            point["padded_pixels"] = point["side"] ** 2
        name = f"{folder.parent.name}/v{folder.name} {graph}"
        graphs.append({"graph": name, "points": points, "fit": fit(points)})
        print(name, graphs[-1]["fit"], file=sys.stderr, flush=True)
    steepest = max(graphs, key=lambda g: g["fit"]["bytes_per_padded_pixel"])
    worker = _run_child(["--worker"])[0]
    return {
        "command": "nice -n 10 python -m bench.memory --sides " + " ".join(map(str, sides)),
        "machine": {"python": platform.python_version(), "kernel": platform.release()},
        "graphs": graphs,
        "steepest": {"graph": steepest["graph"], **steepest["fit"]},
        "largest_constant_bytes": max(g["fit"]["constant_bytes"] for g in graphs),
        **worker,
    }


def markdown(report: dict[str, Any]) -> str:
    """The docs table: peak MB per side, held MB at the largest side, and the fit, per graph."""
    sides = [p["side"] for p in report["graphs"][0]["points"]]
    head = " | ".join(f"peak at {s}x{s} (MB)" for s in sides)
    lines = [f"| Graph | {head} | held after {sides[-1]} (MB) | bytes / padded pixel | constant (MB) |"]
    lines.append("|---" * (len(sides) + 4) + "|")
    for g in report["graphs"]:
        peaks = " | ".join(f"{p['peak_bytes'] / MB:.0f}" for p in g["points"])
        held, f = g["points"][-1]["held_bytes"] / MB, g["fit"]
        slope, constant = f["bytes_per_padded_pixel"], f["constant_bytes"] / MB
        lines.append(f"| {g['graph']} | {peaks} | {held:.0f} | {slope:.0f} | {constant:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Measure (or, as a child, measure one graph) and write the JSON report; print the docs table."""
    parser = argparse.ArgumentParser(prog="bench.memory", description=__doc__.splitlines()[0])
    parser.add_argument("--sides", type=int, nargs="+", default=[256, 512, 1024, 1536])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "memory.json")
    parser.add_argument("--child", nargs=2, metavar=("FOLDER", "GRAPH"), help=argparse.SUPPRESS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child_graph(Path(args.child[0]), cast(GraphRole, args.child[1]), args.sides)
        return 0
    if args.worker:
        child_worker()
        return 0
    report = measure(args.sides)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
