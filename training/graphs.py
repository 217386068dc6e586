"""What each family exports: the graph wrappers, their I/O names and axes, and parity inputs.

A `GraphPlan` describes one ONNX file. Image graphs take inputs already padded to the stride
multiple (the service pads and crops outside the graph, so no shape arithmetic is traced).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from service.codecs.image import pad_to_multiple
from training.models.conv import ConvAutoencoder
from training.models.hyperprior import LEARNED_CODECS, LearnedCodec
from training.models.recurrent import RecurrentAutoencoder


@dataclass
class GraphPlan:
    """One graph to export: module, example inputs, names and symbolic axes per tensor."""

    role: str
    module: nn.Module
    example: tuple[Tensor, ...]
    input_names: list[str]
    output_names: list[str]
    dynamic_axes: dict[str, dict[int, str]]


class _Call(nn.Module):
    """Wraps a bound method of the model as the graph's forward."""

    def __init__(self, model: nn.Module, method: str) -> None:
        super().__init__()
        self.model = model
        self.method = method
        # Graphs are for inference. The exporter restores the wrapper's mode afterwards, recursively,
        # so a wrapper left in training mode would flip the model back to training mode.
        self.eval()

    def forward(self, *inputs: Tensor) -> Tensor | tuple[Tensor, ...]:
        return getattr(self.model, self.method)(*inputs)


class _SelfEnsemble(nn.Module):
    """`reconstruct_padded` averaged over rotations (and, for 8, mirror images) of the input.

    Geometric self-ensemble (as in DnCNN+/EDSR+): a denoiser's errors differ between orientations of
    the same photo, so their mean is closer to the clean image (+0.18 dB at sigma 25 for 4 rotations on
    the held-out photos, at 4x the compute). The latent is the unrotated pass's. Rotating a padded
    input keeps both sides multiples of the stride.
    """

    def __init__(self, model: ConvAutoencoder, views: int) -> None:
        super().__init__()
        self.model = model
        self.views = views
        self.eval()

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor]:
        x_hat, latent = self.model.reconstruct_padded(image)
        outputs = [x_hat]
        for view in range(1, self.views):
            turns, mirrored = view % 4, view >= 4
            seen = _rot90(image, turns)
            seen = torch.flip(seen, (3,)) if mirrored else seen
            out = self.model.reconstruct_padded(seen)[0]
            out = torch.flip(out, (3,)) if mirrored else out
            outputs.append(_rot90(out, -turns % 4))
        return torch.stack(outputs).mean(0), latent


def _rot90(x: Tensor, turns: int) -> Tensor:
    """`torch.rot90(x, turns, (2, 3))` from flips and a transpose (the ONNX exporter has no rot90)."""
    if turns == 1:
        return x.flip(3).transpose(2, 3)
    if turns == 2:
        return x.flip(2).flip(3)
    if turns == 3:
        return x.transpose(2, 3).flip(3)
    return x


SELF_ENSEMBLE_VIEWS = (1, 4, 8)


def _conv_plans(model: ConvAutoencoder, self_ensemble: int = 1) -> list[GraphPlan]:
    cfg = model.config
    if self_ensemble not in SELF_ENSEMBLE_VIEWS:
        raise ValueError(f"self_ensemble must be one of {SELF_ENSEMBLE_VIEWS}, got {self_ensemble}")
    if self_ensemble > 1 and model.has_latent_graphs:
        raise ValueError("self-ensemble is for skip-connection models: encoder and decoder graphs could not match it")
    m = cfg.stride_multiple
    size = cfg.input_size or (4 * m, 6 * m)
    image = torch.rand(2, cfg.channels, *size)
    fixed = cfg.input_size is not None
    spatial = {0: "batch"} if fixed else {0: "batch", 2: "height", 3: "width"}
    latent_axes = {0: "batch"} if cfg.dense_latent is not None else {0: "batch", 2: "latent_height", 3: "latent_width"}
    plans = [
        GraphPlan(
            "autoencoder",
            _SelfEnsemble(model, self_ensemble) if self_ensemble > 1 else _Call(model, "reconstruct_padded"),
            (image,),
            ["image"],
            ["reconstruction", "latent"],
            {"image": spatial, "reconstruction": spatial, "latent": latent_axes},
        )
    ]
    if model.has_latent_graphs:
        with torch.no_grad():
            latent = model.encode(image)
        plans += _encoder_decoder_plans(model, image, latent, spatial, latent_axes)
    return plans


def _encoder_decoder_plans(
    model: nn.Module, image: Tensor, latent: Tensor, spatial: dict[int, str], latent_axes: dict[int, str]
) -> list[GraphPlan]:
    """The standalone encoder (image -> latent) and decoder (latent -> reconstruction) graphs."""
    return [
        GraphPlan(
            "encoder",
            _Call(model, "encode"),
            (image,),
            ["image"],
            ["latent"],
            {"image": spatial, "latent": latent_axes},
        ),
        GraphPlan(
            "decoder",
            _Call(model, "decode"),
            (latent,),
            ["latent"],
            ["reconstruction"],
            {"latent": latent_axes, "reconstruction": spatial},
        ),
    ]


def _codec_plans(model: LearnedCodec) -> list[GraphPlan]:
    m = model.config.stride_multiple
    image = torch.rand(2, model.config.channels, 4 * m, 6 * m)
    with torch.no_grad():
        latent = torch.round(model.encode(image))  # the decoder sees what the bitstream carries
    spatial = {0: "batch", 2: "height", 3: "width"}
    return _encoder_decoder_plans(model, image, latent, spatial, {0: "batch", 2: "latent_height", 3: "latent_width"})


def _recurrent_plans(model: RecurrentAutoencoder) -> list[GraphPlan]:
    cfg = model.config
    series = torch.randn(2, 24, cfg.features)
    lengths = torch.tensor([24, 17])
    with torch.no_grad():
        latent = model.encode(series, lengths)
    seq = {0: "batch", 1: "time"}
    batch = {0: "batch"}
    return [
        GraphPlan(
            "autoencoder",
            _Call(model, "forward_graph"),
            (series, lengths),
            ["sequences", "lengths"],
            ["reconstruction", "latent"],
            {"sequences": seq, "lengths": batch, "reconstruction": seq, "latent": batch},
        ),
        GraphPlan(
            "encoder",
            _Call(model, "encode"),
            (series, lengths),
            ["sequences", "lengths"],
            ["latent"],
            {"sequences": seq, "lengths": batch, "latent": batch},
        ),
        GraphPlan(
            "decoder",
            _Call(model, "decode"),
            (latent, lengths),
            ["latent", "lengths"],
            ["reconstruction"],
            {"latent": batch, "lengths": batch, "reconstruction": seq},
        ),
    ]


def graph_plans(model: nn.Module, self_ensemble: int = 1) -> list[GraphPlan]:
    """The graphs a model exports (skip-connection conv models export only the autoencoder).

    `self_ensemble` (4 or 8 views; conv models with skip connections only) bakes a geometric
    self-ensemble into the autoencoder graph.
    """
    if isinstance(model, ConvAutoencoder):
        return _conv_plans(model, self_ensemble)
    if self_ensemble != 1:
        raise ValueError("self-ensemble applies to conv image models only")
    if isinstance(model, RecurrentAutoencoder):
        return _recurrent_plans(model)
    if isinstance(model, LEARNED_CODECS):
        return _codec_plans(model)
    raise TypeError(f"no export plan for {type(model).__name__}")


def parity_images(
    channels: int, stride_multiple: int, fixed_size: tuple[int, int] | None, rng: np.random.Generator
) -> list[np.ndarray]:
    """Three batches of random images at odd sizes unlike the export example (or the fixed size), padded."""
    sizes = [fixed_size] * 3 if fixed_size else [(17, 29), (61, 33), (130, 97)]
    images = [rng.random((b, channels, *s), dtype=np.float32) for b, s in zip((1, 3, 2), sizes, strict=True)]
    return [pad_to_multiple(x, stride_multiple) for x in images]


def parity_inputs(model: nn.Module, role: str, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Three or more input sets at shapes unlike the export example (odd sizes, far lengths)."""
    rng = np.random.default_rng(seed)
    if isinstance(model, (ConvAutoencoder, *LEARNED_CODECS)):
        cfg = model.config
        padded = parity_images(cfg.channels, cfg.stride_multiple, getattr(cfg, "input_size", None), rng)
        if role != "decoder":
            return [{"image": x} for x in padded]
        with torch.no_grad():
            latents = [model.encode(torch.from_numpy(x)) for x in padded]
        # A codec's decoder sees rounded latents (what the bitstream carries).
        rounding = isinstance(model, LEARNED_CODECS)
        return [{"latent": (torch.round(z) if rounding else z).numpy()} for z in latents]
    if not isinstance(model, RecurrentAutoencoder):
        raise TypeError(f"no parity inputs for {type(model).__name__}")
    # Lengths far from the export example (24). Kept to <= 400: a trained decoder rolled out autonomously
    # for 600+ steps amplifies float32 rounding differences between kernels to ~1e-4 (measured on ECG).
    cases = [[5, 3], [300, 150, 1], [400]]
    sets: list[dict[str, np.ndarray]] = []
    for lengths in cases:
        lengths_array = np.asarray(lengths, dtype=np.int64)
        if role == "decoder":
            latent = rng.standard_normal((len(lengths), model.config.latent_size)).astype(np.float32)
            sets.append({"latent": latent, "lengths": lengths_array})
        else:
            series = rng.standard_normal((len(lengths), max(lengths), model.config.features))
            sets.append({"sequences": series.astype(np.float32), "lengths": lengths_array})
    return sets
