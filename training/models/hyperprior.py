"""`hyperprior-codec`: one variable-rate learned image codec with a mean-scale hyperprior.

Minnen et al. (2018) without the autoregressive context model (so decoding stays parallel), with the
gain units of Cui et al. (2021) for one model over the whole rate range:

    x -> g_a -> y                                   (as the `codec` family: 4 x 5x5 conv s2 + GDN)
    y * gain(t) -> y'                                (t in [0, levels - 1]: per-channel gains, interpolated)
    y' -> h_a -> z -> round -> z_hat                 (factorized prior over z_hat)
    z_hat -> h_s -> (mean, scale)                    (Gaussian conditional for y')
    round(y' - mean) + mean -> y'_hat -> * inverse_gain(t) -> g_s -> x_hat

Trained on rate + lambda(t) * 255^2 * MSE with t drawn uniformly per batch, lambda and the gains
interpolated log-linearly between the levels, so every quality in between is trained, not only the
levels. The service (service/codecs/hyperprior.py) runs g_a and g_s as ONNX graphs and h_a / h_s itself
in float64 with h_s's weights on a fixed-point grid (`FIXED_POINT_BITS`), so the decoder's means and
scales equal the encoder's bit for bit on any machine. The activations here are clamped and the
service rounds them to a grid too; the grids are fine enough that training without them is the
same model.

`g_a` and `g_s` are named as in the `codec` family, so `--init-from` a ladder version starts from its
transforms.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch
from torch import Tensor, nn

from training.layers import FactorizedDensity
from training.models.codec import (
    CompressionAutoencoder,
    analysis_transform,
    conv_down,
    conv_up,
    synthesis_transform,
)
from training.models.conv import pad_to_multiple
from training.registry import register_family

ACTIVATION_CLAMP = 256.0  # hyper-transform activations live in [0, 256]: bounded, so fixed point stays exact
SCALE_BOUND = 0.11  # smallest Gaussian scale (CompressAI's), the first of the service's scale table
LIKELIHOOD_FLOOR = 1e-9


def _default_lambdas() -> list[float]:
    # Six levels over the ladder's range (q1 0.0018 .. q5 0.025), log-spaced.
    return [round(0.0018 * (0.025 / 0.0018) ** (i / 5), 5) for i in range(6)]


@dataclass
class HyperpriorCodecConfig:
    """Hyper-parameters of the `hyperprior-codec` family."""

    family: ClassVar[str] = "hyperprior-codec"
    data_kind: ClassVar[str] = "image"
    channels: int = 3
    """Image channels: 1 (gray) or 3 (RGB)."""
    hidden: int = 128
    """N: channels of the analysis and synthesis transforms."""
    latent_channels: int = 192
    """M: channels of the latent y."""
    hyper_channels: int = 128
    """Channels of the hyper-latent z (4x smaller than y on each side)."""
    lambdas: list[float] = field(default_factory=_default_lambdas)
    """Rate-distortion weight of each gain level, increasing: quality 0 is the first, 1 the last."""
    validation_quality: float = 0.5
    """Quality in [0, 1] at which validation measures the loss (training draws it per batch)."""

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise ValueError("channels must be 1 or 3")
        if len(self.lambdas) < 2 or any(b <= a for a, b in zip(self.lambdas, self.lambdas[1:], strict=False)):
            raise ValueError("lambdas must be at least two increasing values")
        if self.lambdas[0] <= 0:
            raise ValueError("lambdas must be positive")
        if not 0.0 <= self.validation_quality <= 1.0:
            raise ValueError("validation_quality must be in [0, 1]")

    @property
    def stride_multiple(self) -> int:
        """Height and width must be multiples of this inside the graphs (y is H/16; h_s's answer is cropped to y)."""
        return 16


class ClampedReLU(nn.Module):
    """ReLU clamped at ACTIVATION_CLAMP (the service's fixed-point hyper transforms need bounded values)."""

    def forward(self, x: Tensor) -> Tensor:
        """max(0, min(x, clamp))."""
        return torch.clamp(x, 0.0, ACTIVATION_CLAMP)


def gaussian_likelihood(residual: Tensor, scale: Tensor) -> Tensor:
    """P(bin of width 1 centred on `residual`) under N(0, scale), evaluated in the lower tail for accuracy."""
    magnitude = residual.abs()
    upper = 0.5 * torch.erfc((magnitude - 0.5) / (scale * math.sqrt(2.0)))
    lower = 0.5 * torch.erfc((magnitude + 0.5) / (scale * math.sqrt(2.0)))
    return (upper - lower).clamp(min=LIKELIHOOD_FLOOR)


@register_family("hyperprior-codec", HyperpriorCodecConfig)
class HyperpriorCodec(nn.Module):
    """Variable-rate mean-scale hyperprior codec; see the module docstring for the dataflow."""

    has_latent_graphs = True
    log_lambdas: Tensor

    def __init__(self, config: HyperpriorCodecConfig) -> None:
        super().__init__()
        self.config: HyperpriorCodecConfig = config
        n, m, c, h = config.hidden, config.latent_channels, config.channels, config.hyper_channels
        self.g_a = analysis_transform(c, n, m)
        self.g_s = synthesis_transform(m, n, c)
        self.h_a = nn.Sequential(
            conv_down(m, h, kernel=3, stride=1), ClampedReLU(), conv_down(h, h), ClampedReLU(), conv_down(h, h)
        )
        self.h_s = nn.Sequential(
            conv_up(h, m),
            ClampedReLU(),
            conv_up(m, m * 3 // 2),
            ClampedReLU(),
            conv_down(m * 3 // 2, 2 * m, kernel=3, stride=1),
        )
        self.hyper_density = FactorizedDensity(h)
        # Quantisation step ~ 1 / gain: higher-rate levels start finer, gain 1 at the middle quality (the
        # geometric mean of the lambdas, where a warm start's transforms were trained for the ladder).
        # High-rate theory: distortion ~ step^2 and the optimal step ~ 1 / sqrt(lambda), so gain ~ sqrt(lambda).
        middle = math.sqrt(config.lambdas[0] * config.lambdas[-1])
        start = torch.tensor([math.log(lam / middle) * 0.5 for lam in config.lambdas])
        self.log_gain = nn.Parameter(start[:, None].repeat(1, m))
        self.log_inverse_gain = nn.Parameter(-start[:, None].repeat(1, m))
        self.register_buffer("log_lambdas", torch.log(torch.tensor(config.lambdas, dtype=torch.float32)))

    @torch.no_grad()
    def warm_start(self, source: Path, fresh: tuple[str, ...]) -> str | None:
        """After `--init-from` a ladder version (factorized prior): start the hyperprior as that prior.

        The hyper-synthesis' last layer gets zero weights and, as biases, each latent channel's mean and
        standard deviation under the version's integer tables: so the model starts coding like the
        ladder level (a Gaussian fitted to each channel's table) instead of with random scales, and
        training moves from there to what the hyper-latent adds. The hyper-analysis keeps its random
        start: started near zero too, the hyper-latent carried nothing, its density learnt that it
        never moves and the hyper-synthesis had nothing to learn from (measured: the model coded no
        bits in it after 200 steps). Only when that layer came fresh. Returns what it did, for the report.
        """
        tables = source / "entropy_tables.json"
        last: nn.Conv2d = self.h_s[-1]  # type: ignore[assignment]  # a Sequential's item is a Module
        if not tables.is_file() or f"h_s.{len(self.h_s) - 1}.weight" not in fresh:
            return None
        spec = json.loads(tables.read_text())
        moments = []
        for table in spec["tables"]:
            pmf = torch.tensor(table["pmf"], dtype=torch.float64)
            pmf = pmf / pmf.sum()
            values = torch.arange(len(pmf), dtype=torch.float64) + table["offset"]
            mean = float((pmf * values).sum())
            moments.append((mean, math.sqrt(float((pmf * (values - mean) ** 2).sum()))))
        m = self.config.latent_channels
        if len(moments) != m:
            return None
        assert last.bias is not None
        last.weight.zero_()
        last.bias[:m] = torch.tensor([mean for mean, _ in moments])
        last.bias[m:] = torch.tensor([max(std, SCALE_BOUND) for _, std in moments])
        return f"hyper-synthesis started as {source.name}'s factorized prior ({tables.name})"

    def learning_rate_scales(self) -> dict[str, float]:
        """Learning-rate factors by parameter prefix (training.fit): gains and hyper parts learn faster.

        Adam moves a parameter by about lr per step whatever its gradient: a log gain that must travel
        ~1 would need thousands of steps at the transforms' rate, and the hyper parts usually start
        fresh beside warm-started g_a / g_s.
        """
        # The hyper-latent's density: at 1e-3 it needs ~1000 steps to learn even a constant hyper-latent
        # (5.4 -> 2.8 bits per element in 300; at 1e-2, 0.1 bits in 300), and every element costs that.
        return {"log_gain": 10.0, "log_inverse_gain": 10.0, "h_a": 5.0, "h_s": 5.0, "hyper_density": 50.0}

    # ------------------------------------------------------------------ rate levels

    @property
    def levels(self) -> int:
        """How many gain levels the model holds."""
        return len(self.config.lambdas)

    def _interpolate(self, table: Tensor, quality: float) -> Tensor:
        position = quality * (self.levels - 1)
        low = min(int(position), self.levels - 2)
        weight = position - low
        return table[low] * (1 - weight) + table[low + 1] * weight

    def gains(self, quality: float) -> tuple[Tensor, Tensor]:
        """(gain, inverse gain) vectors of a quality in [0, 1]: log-linear between the two nearest levels."""
        return torch.exp(self._interpolate(self.log_gain, quality)), torch.exp(
            self._interpolate(self.log_inverse_gain, quality)
        )

    def lmbda(self, quality: float) -> float:
        """The rate-distortion weight a quality is trained with."""
        return float(torch.exp(self._interpolate(self.log_lambdas, quality)))

    # ------------------------------------------------------------------ transforms

    def encode(self, x: Tensor) -> Tensor:
        """Continuous latent y (before the gain) of an input padded to the stride multiple."""
        return self.g_a(x)

    def decode(self, y_hat: Tensor) -> Tensor:
        """Image from a dequantized latent (after the inverse gain); not clamped."""
        return self.g_s(y_hat)

    def hyper_parameters(
        self, z_hat: Tensor, height: int, width: int, gain: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """(means, scales) of the Gaussian conditional of a `height` x `width` y' from the quantized hyper-latent.

        h_s describes y before the gain; y' = gain * y, so its means and scales are h_s's times the gain
        (the service shifts the scale's table index by the gain in table steps instead: the same within
        half a step, and exact on both sides). z is y's size / 4 rounded up, so h_s answers at least y's
        size: cropped to it.
        """
        means, scales = self.h_s(z_hat)[..., :height, :width].chunk(2, dim=1)
        if gain is not None:
            means, scales = means * gain[None, :, None, None], scales * gain[None, :, None, None]
        return means, scales.clamp(min=SCALE_BOUND)

    def forward(self, x: Tensor, quality: float | None = None) -> dict[str, Tensor]:
        """Reconstruction, bits per pixel and the lambda of the quality (drawn per batch in training)."""
        if quality is None:
            quality = float(torch.rand(())) if self.training else self.config.validation_quality
        height, width = x.shape[-2:]
        gain, inverse_gain = self.gains(quality)
        y = self.encode(pad_to_multiple(x, self.config.stride_multiple)) * gain[None, :, None, None]
        z = self.h_a(y)
        z_hat = z + torch.empty_like(z).uniform_(-0.5, 0.5) if self.training else torch.round(z)
        height_y, width_y = y.shape[-2:]
        means, scales = self.hyper_parameters(z_hat, height_y, width_y, gain)
        # Training: additive noise relaxes rounding; evaluation: the residual from the mean is rounded, as coded.
        y_hat = y + torch.empty_like(y).uniform_(-0.5, 0.5) if self.training else torch.round(y - means) + means
        # The rate is a sum of logs of small probabilities: evaluate it in fp32 even under bf16 autocast.
        with torch.autocast(x.device.type, enabled=False):
            z_likelihoods = self.hyper_density.likelihood(z_hat.float())
            y_likelihoods = gaussian_likelihood(y_hat.float() - means.float(), scales.float())
        pixels = x.shape[0] * height * width
        bpp = -(torch.log2(y_likelihoods).sum() + torch.log2(z_likelihoods).sum()) / pixels
        x_hat = self.decode(y_hat * inverse_gain[None, :, None, None])[..., :height, :width]
        return {"x_hat": x_hat, "latent": y, "bpp": bpp, "lmbda": x.new_tensor(self.lmbda(quality))}


# Families whose graphs are an encoder to a rounded latent and a decoder from it, with an entropy model.
LEARNED_CODECS = (CompressionAutoencoder, HyperpriorCodec)
LearnedCodec = CompressionAutoencoder | HyperpriorCodec
