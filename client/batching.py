"""Many series in requests of at most the server's batch limit, their answers put back in order."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np

from client.results import SeriesReconstruction

# The server's AE_MAX_BATCH_SEQUENCES default; `GET /v1/models` does not report the limit, so a
# server configured lower needs `batch_size=` (a larger batch is refused with 422 saying the limit).
DEFAULT_BATCH_SIZE = 256
DEFAULT_CONCURRENCY = 4

T = TypeVar("T")


def batches(series: Sequence[T], batch_size: int) -> list[Sequence[T]]:
    """`series` cut into consecutive slices of at most `batch_size`."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    return [series[start : start + batch_size] for start in range(0, len(series), batch_size)]


def merge_embeddings(parts: Sequence[np.ndarray]) -> np.ndarray:
    """Per-batch embeddings stacked in the order the batches were cut."""
    return np.concatenate(parts, axis=0) if parts else np.zeros((0, 0), dtype=np.float32)


def merge_reconstructions(parts: Sequence[SeriesReconstruction]) -> SeriesReconstruction:
    """Per-batch reconstructions joined in order; percentiles and flags only if every batch had them."""
    if not parts:
        raise ValueError("no batches to merge")
    return SeriesReconstruction(
        reconstructions=[one for part in parts for one in part.reconstructions],
        errors=np.concatenate([part.errors for part in parts]),
        percentiles=_joined([part.percentiles for part in parts]),
        anomaly=_joined([part.anomaly for part in parts]),
        model=parts[0].model,
        version=parts[0].version,
    )


def _joined(arrays: list[np.ndarray | None]) -> np.ndarray | None:
    present = [array for array in arrays if array is not None]
    return np.concatenate(present) if len(present) == len(arrays) else None
