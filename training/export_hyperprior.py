"""The entropy model of a `hyperprior-codec` version: tables, gains and hyper transforms for the service.

Written beside the encoder (g_a) and decoder (g_s) graphs, read by service.codecs.hyperprior:

- `entropy_model.json`: the hyper-latent's per-channel integer tables (from the learned factorized
  density, as the ladder's), the Gaussian tables (one discretised zero-mean Gaussian per scale of a fixed
  log-spaced set, CompressAI's 0.11 .. 256 in 64 steps), and the log gains of every rate level.
- `hyper_transforms.npz`: h_a's float32 weights (the encoder's alone) and h_s's weights and biases as
  integers x 2^-16 (service.codecs.hyper_transforms: the decoder must compute the scales bit-exactly).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from service.codecs.hyper_transforms import WEIGHT_BITS, HyperTransforms
from service.manifest import EntropyModelSpec, sha256_of
from training.entropy_tables import PRECISION, quantize_pmf
from training.models.hyperprior import SCALE_BOUND, HyperpriorCodec

ENTROPY_MODEL_FILE = "entropy_model.json"
TRANSFORMS_FILE = "hyper_transforms.npz"
SCALES = np.exp(np.linspace(math.log(SCALE_BOUND), math.log(256.0), 64))
TAIL_SIGMAS = 4.5  # a table covers +-4.5 scales (mass outside ~7e-6); rarer values are escaped, exactly


def gaussian_table(scale: float) -> dict[str, object]:
    """The integer table of round(N(0, scale)) over -R..R, R = ceil(TAIL_SIGMAS * scale)."""
    radius = max(1, math.ceil(TAIL_SIGMAS * scale))
    k = np.arange(-radius, radius + 1, dtype=np.float64)
    upper = 0.5 * np.array([math.erfc((abs(v) - 0.5) / (scale * math.sqrt(2))) for v in k])
    lower = 0.5 * np.array([math.erfc((abs(v) + 0.5) / (scale * math.sqrt(2))) for v in k])
    pmf = upper - lower
    return {"offset": -radius, "pmf": quantize_pmf(pmf / pmf.sum())}


def _conv_layers(sequence: nn.Sequential) -> list[nn.Conv2d | nn.ConvTranspose2d]:
    return [layer for layer in sequence if isinstance(layer, nn.Conv2d | nn.ConvTranspose2d)]


def _fixed_point(values: torch.Tensor) -> np.ndarray:
    scaled = np.rint(values.detach().double().numpy() * 2**WEIGHT_BITS)
    if np.abs(scaled).max() >= 2**31:
        raise ValueError("a hyper-synthesis weight is too large for the fixed-point format")
    return scaled.astype(np.int32)


def write_transforms(model: HyperpriorCodec, path: Path) -> None:
    """h_a as float32 and h_s as fixed point, each layer with its (stride, transposed) layout."""
    arrays: dict[str, np.ndarray] = {}
    for prefix, sequence, fixed in (("h_a", model.h_a, False), ("h_s", model.h_s, True)):
        for index, layer in enumerate(_conv_layers(sequence)):
            assert layer.bias is not None
            convert = _fixed_point if fixed else (lambda t: t.detach().float().numpy())
            arrays[f"{prefix}.{index}.weight"] = convert(layer.weight)
            arrays[f"{prefix}.{index}.bias"] = convert(layer.bias)
            transposed = isinstance(layer, nn.ConvTranspose2d)
            arrays[f"{prefix}.{index}.layout"] = np.array([layer.stride[0], int(transposed)], dtype=np.int64)
    with path.open("wb") as handle:
        np.savez(handle, **arrays)  # type: ignore[arg-type]  # numpy types **kwds as allow_pickle
    HyperTransforms.load(path)  # refuses weights whose sums would leave the exact range


@torch.no_grad()
def export_entropy_model(model: HyperpriorCodec, out: Path) -> EntropyModelSpec:
    """Write both files of the entropy model into `out`; the manifest entry naming them."""
    hyper = [
        {"offset": offset, "pmf": quantize_pmf(pmf.double().numpy())}
        for offset, pmf in model.hyper_density.integer_pmfs()
    ]
    spec = {
        "precision": PRECISION,
        "hyper_tables": {"precision": PRECISION, "tables": hyper},
        "gaussian_tables": {"precision": PRECISION, "tables": [gaussian_table(float(s)) for s in SCALES]},
        "scales": SCALES.tolist(),
        # The tables' scales are log-spaced: scaling a scale by the gain shifts its index by log(gain) / this.
        "scale_log_step": (math.log(256.0) - math.log(SCALE_BOUND)) / (len(SCALES) - 1),
        "log_gains": model.log_gain.double().tolist(),
        "log_inverse_gains": model.log_inverse_gain.double().tolist(),
        "lambdas": list(model.config.lambdas),
    }
    tables = out / ENTROPY_MODEL_FILE
    tables.write_text(json.dumps(spec, separators=(",", ":")) + "\n")
    transforms = out / TRANSFORMS_FILE
    write_transforms(model, transforms)
    return EntropyModelSpec(
        kind="mean-scale-hyperprior",
        file=tables.name,
        sha256=sha256_of(tables),
        precision=PRECISION,
        transforms=transforms.name,
        transforms_sha256=sha256_of(transforms),
    )
