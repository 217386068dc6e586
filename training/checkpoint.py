"""Checkpoints carry the run config, so a model can be rebuilt without the original config file."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import nn

from training.config import RunConfig, config_from_dict, parse_override
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


def restore_model(
    run_dir: Path, which: str = BEST, overrides: list[str] | None = None
) -> tuple[nn.Module, RunConfig, dict[str, Any]]:
    """(model in eval mode, its config, the checkpoint) from a run folder; falls back to the latest.

    `overrides` (`model.key=value`) change model settings that hold no weights (a hybrid's
    `served_paa_weight`); loading the weights is strict, so a changed architecture fails here.
    """
    path = run_dir / which
    if not path.is_file():
        path = run_dir / LATEST
    state = load_checkpoint(path)
    raw = copy.deepcopy(state["config"])
    for text in overrides or []:
        (section, key), value = parse_override(text)
        if section != "model":
            raise ValueError(f"override {text!r}: only model settings can change after training")
        raw["model"][key] = value
    config = config_from_dict(raw)
    model = build_model(config.model)
    model.load_state_dict(state["model"])
    return model.eval(), config, state
