"""Running one job per file with bounded concurrency, a progress bar, and the closing summary."""

from __future__ import annotations

import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from tqdm import tqdm

from client.errors import ClientError, ServiceError


@dataclass
class Outcome:
    """What became of one input file: bytes read and written, codec figures, or why it failed."""

    path: Path
    bytes_in: int = 0
    bytes_out: int = 0
    bits_per_pixel: float | None = None
    psnr: float | None = None
    quality: float | None = None
    items: int = 0
    error: str | None = None


Job = Callable[[Path], Outcome]


def run_jobs(paths: list[Path], job: Job, concurrency: int, quiet: bool) -> list[Outcome]:
    """`job` on every path, `concurrency` at a time; outcomes in input order, a failure never stops the rest."""
    outcomes: dict[Path, Outcome] = {}
    # The bar goes to stderr (stdout may be piped data) and only to a terminal.
    with (
        tqdm(total=len(paths), unit="file", file=sys.stderr, disable=quiet or not sys.stderr.isatty()) as bar,
        ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool,
    ):
        futures = {pool.submit(_guarded, job, path): path for path in paths}
        for future in as_completed(futures):
            outcomes[futures[future]] = future.result()
            bar.update()
    return [outcomes[path] for path in paths]


def _guarded(job: Job, path: Path) -> Outcome:
    try:
        return job(path)
    except ServiceError as error:
        return Outcome(path, error=f"{error.status} {error.code}: {error.message}")
    except (ClientError, OSError, ValueError) as error:
        return Outcome(path, error=str(error))


def summarize(command: str, outcomes: list[Outcome], stream: TextIO) -> int:
    """Failed files with their messages, then one summary line; the exit status (1 if any failed)."""
    failed = [outcome for outcome in outcomes if outcome.error is not None]
    for outcome in failed:
        print(f"failed: {outcome.path}: {outcome.error}", file=stream)
    done = [outcome for outcome in outcomes if outcome.error is None]
    parts = [
        f"{command}: {len(outcomes)} file{'' if len(outcomes) == 1 else 's'}, {len(done)} ok, {len(failed)} failed",
        f"{sum(o.bytes_in for o in done)} bytes in, {sum(o.bytes_out for o in done)} bytes out",
    ]
    if items := sum(o.items for o in done):
        parts.append(f"{items} series")
    parts += _mean("bpp", [o.bits_per_pixel for o in done], 4) + _mean("PSNR", [o.psnr for o in done], 2, " dB")
    parts += _quality_range([o.quality for o in done])
    print("; ".join(parts), file=stream)
    return 1 if failed else 0


def _quality_range(values: list[float | None]) -> list[str]:
    # A size target finds a quality per file: the range says more than a mean of qualities would.
    present = [value for value in values if value is not None]
    if not present:
        return []
    low, high = min(present), max(present)
    return [f"quality {low:.3f}" if low == high else f"quality {low:.3f}-{high:.3f}"]


def _mean(name: str, values: list[float | None], digits: int, unit: str = "") -> list[str]:
    present = [value for value in values if value is not None]
    return [f"mean {name} {sum(present) / len(present):.{digits}f}{unit}"] if present else []
