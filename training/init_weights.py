"""Starting weights for `ae-train fit --init-from`: another run, a served model version, or a weights file.

In order of preference:

1. A weights file (`training/weights_file.py`): a `.safetensors` path, or a folder holding
   `weights.safetensors` (a model version that ships its fp16 weights, or any folder). It holds every
   parameter, so nothing starts fresh; its family must be the run's.
2. A model version folder (`models/NAME/VERSION`, recognised by its `model.json`) gives the weights its
   ONNX graphs carry as initializers: the exporter names them `model.<parameter>`, so every trained
   parameter of the graphs' modules comes back. Parameters no graph holds (a codec's density model,
   which the service replaced by integer tables) start fresh, and the caller is told which.
3. A run folder gives its best (else latest) checkpoint.

When the run is gray (`channels = 1`) and the weights are RGB, they are converted: input filters
summed over their RGB inputs, output filters combined with the luma weights. The gray network then
computes on a gray image what the RGB network computes on that image replicated to three channels,
followed by the luma of its answer: exactly for a linear output (a codec's synthesis, a residual
denoiser's correction, up to where its answer is clipped to [0, 1]), approximately through a sigmoid
output (plain conv autoencoders). Fine-tuning on gray data then starts from the RGB model's quality
instead of from scratch. A version that already has a gray variant gives a gray run its gray graphs'
weights as they are, and an RGB run its RGB graphs'.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from service.manifest import GRAY_PREFIX
from training.checkpoint import BEST, LATEST, load_checkpoint
from training.weights_file import WEIGHTS_FILE, check_family, model_config_of, read_weights

LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, as Pillow's convert("L")
ONNX_PREFIX = "model."


@dataclass(frozen=True)
class InitialWeights:
    """Weights to load and what the caller should know about them."""

    state: dict[str, Tensor]
    source: str
    fresh: tuple[str, ...]  # parameters of the model the source does not hold


def load_initial_weights(source: Path, model: nn.Module, family: str, channels: int) -> InitialWeights:
    """Weights from a weights file, model version or run, converted to gray when the run is gray; see the module doc."""
    weights_file = source if source.suffix == ".safetensors" else source / WEIGHTS_FILE
    if weights_file.is_file():
        state, rgb = _from_weights_file(weights_file, family)
    elif (source / "model.json").is_file():
        state, rgb = _from_model_version(source, gray=channels == 1)
    elif (source / BEST).is_file() or (source / LATEST).is_file():
        saved = load_checkpoint(source / BEST if (source / BEST).is_file() else source / LATEST)
        state, rgb = saved["model"], saved["config"]["model"].get("channels", 3) == 3
    else:
        raise FileNotFoundError(
            f"--init-from {source}: neither a run folder (with {BEST}), a model version (with model.json) "
            f"nor a weights file ({WEIGHTS_FILE})"
        )
    if channels == 1 and rgb:
        state = _GRAY_CONVERSIONS[family](state) if family in _GRAY_CONVERSIONS else _no_conversion(family)
    own = model.state_dict()
    unexpected = sorted(set(state) - set(own))
    mismatched = sorted(k for k in state if k in own and own[k].shape != state[k].shape)
    if unexpected or mismatched:
        raise ValueError(
            f"--init-from {source} does not fit this model: unknown parameters {unexpected[:5]}, "
            f"different shapes {[(k, tuple(state[k].shape), tuple(own[k].shape)) for k in mismatched[:5]]}"
        )
    return InitialWeights(state, str(source), tuple(sorted(set(own) - set(state))))


def apply_initial_weights(model: nn.Module, weights: InitialWeights) -> None:
    """Load the weights; parameters the source lacks keep their fresh initialisation."""
    model.load_state_dict(weights.state, strict=not weights.fresh)


def _from_weights_file(path: Path, family: str) -> tuple[dict[str, Tensor], bool]:
    """(weights, whether they are RGB) from a weights file of the run's family."""
    state, metadata = read_weights(path)
    check_family(metadata, family, path)
    return state, model_config_of(metadata).get("channels", 3) == 3


def _from_model_version(folder: Path, gray: bool) -> tuple[dict[str, Tensor], bool]:
    """(weights, whether they are RGB) from a version's graphs: its gray variant's for a gray run, if it has one."""
    import onnx  # a training dependency, imported here so that fit without --init-from never needs it
    from onnx import numpy_helper

    manifest = json.loads((folder / "model.json").read_text())
    has_variant = any(role.startswith(GRAY_PREFIX) for role in manifest["graphs"])
    use_variant = gray and has_variant
    state: dict[str, Tensor] = {}
    for role, graph in manifest["graphs"].items():
        if role.startswith(GRAY_PREFIX) != use_variant:
            continue
        for init in onnx.load(str(folder / graph["file"])).graph.initializer:
            if init.name.startswith(ONNX_PREFIX):  # parameters; the exporter's own constants are not
                state[init.name.removeprefix(ONNX_PREFIX)] = torch.from_numpy(numpy_helper.to_array(init).copy())
    if not state:
        raise ValueError(f"{folder}: its graphs hold no named parameters to start from")
    return state, manifest["input"]["channels"] == 3 and not use_variant


def _luma(out_axis: int) -> Callable[[Tensor], Tensor]:
    def combine(t: Tensor) -> Tensor:
        weights = torch.tensor(LUMA, dtype=t.dtype).reshape([-1 if i == out_axis else 1 for i in range(t.dim())])
        return (t * weights).sum(dim=out_axis, keepdim=True)

    return combine


def _sum_inputs(tail: bool) -> Callable[[Tensor], Tensor]:
    """Sum the three image inputs of a conv weight (axis 1): all of them, or the last three (a skip)."""

    def combine(t: Tensor) -> Tensor:
        if not tail:
            return t.sum(dim=1, keepdim=True)
        return torch.cat([t[:, :-3], t[:, -3:].sum(dim=1, keepdim=True)], dim=1)

    return combine


def _convert(rules: dict[str, list[Callable[[Tensor], Tensor]]]) -> Callable[[dict[str, Tensor]], dict[str, Tensor]]:
    def convert(state: dict[str, Tensor]) -> dict[str, Tensor]:
        out = dict(state)
        for name, steps in rules.items():
            for step in steps:
                out[name] = step(out[name])
        return out

    return convert


def _conv_family(state: dict[str, Tensor]) -> dict[str, Tensor]:
    # The image enters the full-resolution stem when there is one, else the first downsampling stage;
    # the head sees the decoder's features and, with skip connections, the input image last.
    first = "stem.0.weight" if "stem.0.weight" in state else "down.0.0.weight"
    skip = state["head.weight"].shape[1] == state[first].shape[0] + 3
    rules: dict[str, list[Callable[[Tensor], Tensor]]] = {
        first: [_sum_inputs(tail=False)],
        "head.weight": [_luma(0)] + ([_sum_inputs(tail=True)] if skip else []),
        "head.bias": [_luma(0)],
    }
    return _convert(rules)(state)


_GRAY_CONVERSIONS: dict[str, Callable[[dict[str, Tensor]], dict[str, Tensor]]] = {
    "conv": _conv_family,
    # Transposed convolutions keep their output channels on axis 1.
    "codec": _convert(
        {"g_a.0.weight": [_sum_inputs(tail=False)], "g_s.6.weight": [_luma(1)], "g_s.6.bias": [_luma(0)]}
    ),
}


def _no_conversion(family: str) -> dict[str, Tensor]:
    raise ValueError(f"no RGB-to-gray weight conversion for family {family!r}: train the gray model from scratch")
