"""Checkpoints carry the run config, so a model can be rebuilt without the original config file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from training.config import RunConfig, config_from_dict
from training.registry import build_model

LATEST = "checkpoint.pt"
BEST = "best.pt"


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write atomically: a crash mid-write must not destroy the previous checkpoint."""
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint onto the CPU."""
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    return torch.load(path, map_location="cpu", weights_only=False)


def restore_model(run_dir: Path, which: str = BEST) -> tuple[nn.Module, RunConfig, dict[str, Any]]:
    """(model in eval mode, its config, the checkpoint) from a run folder; falls back to the latest."""
    path = run_dir / which
    if not path.is_file():
        path = run_dir / LATEST
    state = load_checkpoint(path)
    config = config_from_dict(state["config"])
    model = build_model(config.model)
    model.load_state_dict(state["model"])
    return model.eval(), config, state
