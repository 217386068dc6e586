"""Committed weights: a model's state as fp16 safetensors, small enough for git, with its family and config.

A default's `models/NAME/VERSION/weights.safetensors` lets anyone fine-tune it (`ae-train fit --init-from`)
without the ONNX graphs' gaps (a codec's density model is not in its graphs), and the CPU recipe's
`training-snapshots/*.safetensors` lets a run that outlives a working period go on from committed weights.
Weights only: no optimizer state, so a warm start gets a fresh optimizer and schedule.

The file's metadata (strings, as safetensors requires) say what the tensors are:

    format   "ae-train weights 1"
    family   the registry name of the model family
    config   the model config as JSON (family included), enough to rebuild the model

Floating tensors are stored as float16 (relative rounding 2^-11, about 5e-4) and read back as float32;
integer tensors as they are.

    python -m training.weights_file snapshot runs/NAME/checkpoint.pt OUT.safetensors
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

WEIGHTS_FILE = "weights.safetensors"
FORMAT = "ae-train weights 1"


def write_weights(model: nn.Module, config: dict[str, Any], folder: Path) -> Path:
    """Write `model`'s weights to `folder`/weights.safetensors; `config` is its model config dict (with family)."""
    folder.mkdir(parents=True, exist_ok=True)
    return write_state(model.state_dict(), config, folder / WEIGHTS_FILE)


def write_state(state: Mapping[str, Tensor], config: dict[str, Any], path: Path) -> Path:
    """Write a state dict as fp16 safetensors to `path`, atomically (a reader never sees half a file)."""
    from safetensors.torch import save_file  # imported here: `fit` without weights files never needs it

    if "family" not in config:
        raise ValueError("the model config given with the weights has no 'family'")
    tensors = {name: _stored(name, tensor) for name, tensor in state.items()}
    metadata = {"format": FORMAT, "family": str(config["family"]), "config": json.dumps(config, sort_keys=True)}
    path.parent.mkdir(parents=True, exist_ok=True)
    # A per-process temporary name: the CPU recipe's last snapshot may overlap a periodic one.
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    tmp.replace(path)
    return path


def read_weights(path: Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    """(tensors with floating ones as float32, metadata) of a weights file; refuses files of another format."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        metadata = dict(handle.metadata() or {})
        if metadata.get("format") != FORMAT:
            raise ValueError(
                f"{path}: not an ae-train weights file (format {metadata.get('format')!r}, want {FORMAT!r})"
            )
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118  (not a dict)
    return {name: t.float() if t.is_floating_point() else t for name, t in tensors.items()}, metadata


def check_family(metadata: Mapping[str, str], family: str, path: Path) -> None:
    """Refuse weights of another model family than the run's (their names could still collide)."""
    if metadata.get("family") != family:
        raise ValueError(f"{path} holds weights of family {metadata.get('family')!r}, this run is {family!r}")


def model_config_of(metadata: Mapping[str, str]) -> dict[str, Any]:
    """The model config dict (family included) the weights were written with."""
    config: dict[str, Any] = json.loads(metadata["config"])
    return config


def snapshot(checkpoint: Path, out: Path) -> Path:
    """Write a training checkpoint's model weights (not its optimizer) as a weights file at `out`."""
    from training.checkpoint import load_checkpoint  # torch.load only when converting

    saved = load_checkpoint(checkpoint)
    return write_state(saved["model"], saved["config"]["model"], out)


def _stored(name: str, tensor: Tensor) -> Tensor:
    # safetensors writes contiguous CPU tensors only; fp16 overflows past 65504, which no trained
    # weight of ours reaches: if one does, refuse rather than commit an inf.
    stored = tensor.detach().to("cpu").contiguous()
    if stored.is_floating_point():
        stored = stored.to(torch.float16)
        if not torch.isfinite(stored).all():
            raise ValueError(f"weight {name!r} does not fit float16 (|value| > 65504 or not finite)")
    return stored


def main(argv: list[str] | None = None) -> int:
    """`snapshot CHECKPOINT OUT`: the recipes' conversion of a checkpoint to committed weights."""
    parser = argparse.ArgumentParser(prog="python -m training.weights_file", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    snap = commands.add_parser("snapshot", help="write a checkpoint's weights as fp16 safetensors")
    snap.add_argument("checkpoint", type=Path, help="a run's checkpoint.pt or best.pt")
    snap.add_argument("out", type=Path, help="the .safetensors file to write (replaced atomically)")
    args = parser.parse_args(argv)
    print(snapshot(args.checkpoint, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
