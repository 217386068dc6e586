"""Integer probability tables of a codec's latent, written beside its graphs for the service's coder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from training.models.codec import CompressionAutoencoder

PRECISION = 16
TABLES_FILE = "entropy_tables.json"


def quantize_pmf(pmf: np.ndarray, precision: int = PRECISION) -> list[int]:
    """Integer counts summing to 2**precision, every symbol at least 1 (so each stays codable)."""
    total = 1 << precision
    counts = np.floor(pmf * (total - len(pmf))).astype(np.int64) + 1
    counts[int(np.argmax(counts))] += total - int(counts.sum())  # the remainder goes to the mode
    return counts.tolist()


def write_tables(model: CompressionAutoencoder, folder: Path, name: str = TABLES_FILE) -> Path:
    """Evaluate the learned density at the integers and store per-channel integer tables."""
    tables = [
        {"offset": offset, "pmf": quantize_pmf(pmf.double().numpy())} for offset, pmf in model.density.integer_pmfs()
    ]
    path = folder / name
    path.write_text(json.dumps({"precision": PRECISION, "tables": tables}, separators=(",", ":")) + "\n")
    return path
