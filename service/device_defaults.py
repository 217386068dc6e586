"""Batching defaults that depend on where the graphs run: a GPU wants bigger batches than a CPU.

`Settings` declares the CPU's defaults (measured on the 2-core dev VM: convolutions on a CPU gain
nothing from batching large images, so a batch holds at most 256x256 padded pixels). A GPU runs a
batch of 64 small images in about the time of one, and a kernel launch costs the same for one image
or many, so where the sessions will run on CUDA the batching settings the operator left unset take
the values below. A setting given in the environment is always kept.

The GPU values are a starting point chosen from the GPU's arithmetic, not yet measured on a GPU:
`scripts/gpu_check.sh` measures them, and docs/benchmarks.md holds what it found.
"""

from __future__ import annotations

from typing import Any

from service.config import Settings
from service.engine import available_providers
from service.gpu_memory import runs_on_cuda

# Rows per run, padded pixels per batch of images (64 images of 128x128, 16 of 256x256), and the
# wait for company while more requests are being decoded (a GPU run of a full batch costs ~ one row).
GPU_BATCHING: dict[str, Any] = {"max_batch_size": 64, "max_batch_pixels": 1024 * 1024, "max_wait_ms": 4.0}


def batching_for(settings: Settings, providers: list[str]) -> Settings:
    """`settings` with the batching defaults of the device `providers` run on (the CPU's are declared)."""
    if not runs_on_cuda(providers):
        return settings
    unset = {name: value for name, value in GPU_BATCHING.items() if name not in settings.model_fields_set}
    if not unset:
        return settings
    # model_copy does not validate: the values above are valid, and no validator of Settings reads them.
    return settings.model_copy(update=unset)


def device_settings(settings: Settings) -> Settings:
    """`settings` for the providers this host grants (probed once per process; see engine.available_providers)."""
    insist = "providers" in settings.model_fields_set
    return batching_for(settings, available_providers(settings.providers, insist=insist))
