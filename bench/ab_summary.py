"""Medians of `scripts/bench_ab.sh`'s runs: requests/s per cell, before and after, and their ratio.

python -m bench.ab_summary OUT      (OUT/before1, OUT/after1, ... each holding a benchmarks.json)
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path


def cells(folder: Path, side: str) -> dict[tuple[str, int, str], list[float]]:
    """Requests/s per (workload, concurrency, server) over the runs of one side."""
    found: dict[tuple[str, int, str], list[float]] = {}
    for run in sorted(folder.glob(f"{side}*/benchmarks.json")):
        for cell in json.loads(run.read_text())["cells"]:
            key = (cell["workload"], cell["concurrency"], cell["server"])
            found.setdefault(key, []).append(cell["requests_per_s"])
    return found


def table(folder: Path) -> str:
    """The markdown table of medians."""
    before, after = cells(folder, "before"), cells(folder, "after")
    lines = [
        "| workload | concurrency | server | before req/s (runs) | after req/s (runs) | after / before (medians) |",
        "|---|---|---|---|---|---|",
    ]
    for key in sorted(before.keys() & after.keys()):
        old, new = statistics.median(before[key]), statistics.median(after[key])
        runs_old, runs_new = (", ".join(f"{v:.0f}" for v in side[key]) for side in (before, after))
        lines.append(
            f"| {key[0]} | {key[1]} | {key[2]} | {old:.0f} ({runs_old}) | {new:.0f} ({runs_new}) | {new / old:.3f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(table(Path(sys.argv[1])), end="")
