"""`codec`: a learned image codec in the style of Balle et al. (2017, 2018), factorized prior.

Dataflow (four stride-2 stages, so the stride multiple is 16):

    x -> g_a: [5x5 conv s2 + GDN] x 3, 5x5 conv s2 -> y (B, M, H/16, W/16)
    y -> quantize: y + U(-1/2, 1/2) in training, round(y) at inference -> y_hat
    y_hat -> g_s: [5x5 transposed conv s2 + IGDN] x 3, 5x5 transposed conv s2 -> x_hat
    y_hat -> factorized density -> likelihoods -> rate (bits per pixel)

Trained on rate + lambda * 255^2 * MSE. At export, the density becomes integer probability tables
per channel and the service entropy-codes round(y) with them into a real bitstream.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from training.layers import GDN, FactorizedDensity
from training.models.conv import pad_to_multiple
from training.registry import register_family


@dataclass
class CodecConfig:
    """Hyper-parameters of the `codec` family."""

    family: ClassVar[str] = "codec"
    data_kind: ClassVar[str] = "image"
    channels: int = 3
    """Image channels: 1 (gray) or 3 (RGB)."""
    hidden: int = 64
    """N: channels of the analysis and synthesis transforms."""
    latent_channels: int = 96
    """M: channels of the latent y that is quantized and entropy-coded."""
    lmbda: float = 0.0067
    """Distortion weight of the rate-distortion loss: higher = better quality, more bits."""

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise ValueError("channels must be 1 or 3")
        if self.lmbda <= 0:
            raise ValueError("lmbda must be positive")

    @property
    def stride_multiple(self) -> int:
        """Height and width must be multiples of this inside the graphs."""
        return 16


def conv_down(c_in: int, c_out: int, kernel: int = 5, stride: int = 2) -> nn.Conv2d:
    """A convolution with 'same' padding: stride 2 halves each side (rounding up)."""
    return nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2)


def conv_up(c_in: int, c_out: int) -> nn.ConvTranspose2d:
    """A 5x5 transposed convolution that doubles each side exactly."""
    return nn.ConvTranspose2d(c_in, c_out, 5, stride=2, padding=2, output_padding=1)


def analysis_transform(channels: int, hidden: int, latent: int) -> nn.Sequential:
    """g_a: [5x5 conv s2 + GDN] x 3, 5x5 conv s2 (16x smaller on each side)."""
    n = hidden
    return nn.Sequential(
        conv_down(channels, n), GDN(n), conv_down(n, n), GDN(n), conv_down(n, n), GDN(n), conv_down(n, latent)
    )


def synthesis_transform(latent: int, hidden: int, channels: int) -> nn.Sequential:
    """g_s: [5x5 transposed conv s2 + IGDN] x 3, 5x5 transposed conv s2 (16x larger on each side)."""
    n = hidden
    return nn.Sequential(
        conv_up(latent, n),
        GDN(n, inverse=True),
        conv_up(n, n),
        GDN(n, inverse=True),
        conv_up(n, n),
        GDN(n, inverse=True),
        conv_up(n, channels),
    )


@register_family("codec", CodecConfig)
class CompressionAutoencoder(nn.Module):
    """Factorized-prior learned codec; see the module docstring for the dataflow."""

    has_latent_graphs = True

    def __init__(self, config: CodecConfig) -> None:
        super().__init__()
        self.config: CodecConfig = config
        n, m, c = config.hidden, config.latent_channels, config.channels
        self.g_a = analysis_transform(c, n, m)
        self.g_s = synthesis_transform(m, n, c)
        self.density = FactorizedDensity(m)

    def encode(self, x: Tensor) -> Tensor:
        """Continuous latent y of an input padded to the stride multiple (the service rounds it)."""
        return self.g_a(x)

    def decode(self, y_hat: Tensor) -> Tensor:
        """Image from a (quantized) latent; not clamped, the service clips to [0, 1] when encoding pixels."""
        return self.g_s(y_hat)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """Reconstruction, likelihoods and bits per pixel (noise in training, rounding in eval)."""
        height, width = x.shape[-2:]
        y = self.encode(pad_to_multiple(x, self.config.stride_multiple))
        y_hat = y + torch.empty_like(y).uniform_(-0.5, 0.5) if self.training else torch.round(y)
        # The rate is a sum of logs of small probabilities: evaluate it in fp32 even under bf16 autocast.
        with torch.autocast(x.device.type, enabled=False):
            likelihoods = self.density.likelihood(y_hat.float())
        pixels = x.shape[0] * height * width
        bpp = -torch.log2(likelihoods).sum() / pixels
        x_hat = self.decode(y_hat)[..., :height, :width]
        return {"x_hat": x_hat, "latent": y, "likelihoods": likelihoods, "bpp": bpp}
