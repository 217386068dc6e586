"""The default `AE_MAX_IMAGE_PIXELS`: what fits in the memory each worker may use.

A graph's peak memory grows linearly with the padded pixel count it runs on (`python -m bench.memory`
measures every committed image graph and fits `peak = slope * padded pixels + constant`). Without
an explicit limit, the service allows the largest image for which one run of the steepest graph
still fits into this worker's share of the memory available at start-up:

    pixels = (SHARE * available / workers - WORKER_BYTES - constant) / (slope + PIPELINE_BYTES_PER_PIXEL)

clamped to [FLOOR_PIXELS, CEILING_PIXELS]. `available` is the cgroup's memory limit when the process
has one (v2 `memory.max`, v1 `memory.limit_in_bytes`), capped by `MemAvailable` from /proc/meminfo.
"""

from __future__ import annotations

from pathlib import Path

# From docs/memory.json (`python -m bench.memory`, measured on the 2-core dev machine with the service's
# ONNX Runtime settings): the steepest committed image graph is image-codec v3's decoder at 998 bytes
# per padded pixel (image-denoise v3: 900, image-conv v2: 176); the largest fitted constant is 35 MB
# (image-denoise v2). Rounded up. Re-measure and update these when a committed model changes.
BYTES_PER_PADDED_PIXEL = 1000
CONSTANT_BYTES = 36 * 1024 * 1024
# A worker's RSS with the committed repository loaded and warmed: 195 MB (worker_warm_bytes), rounded up.
WORKER_BYTES = 256 * 1024 * 1024
# What the request path holds beside the graph's own peak (the body, the uint8 image and answer, the
# PNG). Measured end to end: image-conv at 2048 x 2048 in `ae-serve` peaked 721 MB above warm, the
# graph alone 686 MB, so ~8 bytes per pixel; doubled.
PIPELINE_BYTES_PER_PIXEL = 16
# Leave a fifth of the memory for the rest of the process, the page cache and estimation error.
SHARE = 0.8
# Never below 1 Mpx (1024 x 1024): a tiny container still serves ordinary photos, and a limit it
# cannot afford is better refused loudly by the kernel than by every request.
FLOOR_PIXELS = 1024 * 1024
# Never above the former fixed default (4096 x 4096): larger images are a deliberate choice.
CEILING_PIXELS = 4096 * 4096
# cgroup files report "no limit" as "max" (v2) or as a number near 2**63 (v1).
_UNLIMITED = 1 << 60


def _read_int(path: Path) -> int | None:
    """The integer in a one-line file; None when absent, unreadable or "max"."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def cgroup_limit(root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """The cgroup memory limit of this process in bytes (v2, then v1), or None when it has none."""
    for path in (root / "memory.max", root / "memory" / "memory.limit_in_bytes"):
        limit = _read_int(path)
        if limit is not None and limit < _UNLIMITED:
            return limit
    return None


def meminfo_available(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """`MemAvailable` (else `MemTotal`) from /proc/meminfo in bytes, or None off Linux."""
    try:
        fields = dict(line.split(":", 1) for line in meminfo.read_text().splitlines() if ":" in line)
    except OSError:
        return None
    for key in ("MemAvailable", "MemTotal"):
        if key in fields:
            return int(fields[key].split()[0]) * 1024
    return None


def available_memory(cgroup_root: Path = Path("/sys/fs/cgroup"), meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """Bytes this process may use: its cgroup limit capped by the machine's available memory."""
    known = [m for m in (cgroup_limit(cgroup_root), meminfo_available(meminfo)) if m is not None]
    return min(known) if known else None


def derived_max_image_pixels(available: int | None, workers: int) -> int:
    """The largest padded pixel count one run may take in each of `workers` workers sharing `available`."""
    if available is None:
        return CEILING_PIXELS
    per_worker = SHARE * available / max(1, workers) - WORKER_BYTES - CONSTANT_BYTES
    pixels = int(per_worker / (BYTES_PER_PADDED_PIXEL + PIPELINE_BYTES_PER_PIXEL))
    return max(FLOOR_PIXELS, min(CEILING_PIXELS, pixels))
