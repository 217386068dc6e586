"""Building blocks shared by model families: GDN / IGDN and the factorized entropy model."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn


class GDN(nn.Module):
    """Generalized divisive normalization (Balle et al., 2016): y_i = x_i / sqrt(beta_i + sum_j gamma_ij x_j^2).

    `inverse=True` gives IGDN (multiply instead of divide), used in synthesis transforms. beta and
    gamma are kept non-negative by squaring their parameters; beta has a floor so the root stays
    away from zero. Every op (square, 1x1 conv, sqrt) exports to ONNX.
    """

    def __init__(self, channels: int, inverse: bool = False, gamma_init: float = 0.1) -> None:
        super().__init__()
        self.inverse = inverse
        self.beta_root = nn.Parameter(torch.ones(channels))
        self.gamma_root = nn.Parameter(torch.sqrt(gamma_init * torch.eye(channels)))

    def forward(self, x: Tensor) -> Tensor:
        """Normalize (or, inverse, de-normalize) across channels at each position."""
        beta = self.beta_root**2 + 1e-6
        gamma = (self.gamma_root**2).view(*self.gamma_root.shape, 1, 1)
        norm = torch.sqrt(F.conv2d(x * x, gamma, beta))
        return x * norm if self.inverse else x / norm


class FactorizedDensity(nn.Module):
    """A learned, per-channel univariate density over the latent (Balle et al., 2018, appendix 6.1).

    The cumulative c(x) = sigmoid(f(x)) where f is a small monotone network per channel: matrices
    kept positive by softplus, and tanh gates. The likelihood of an integer-quantized value y is
    c(y + 1/2) - c(y - 1/2); in training, y is the latent plus uniform noise (the relaxation of
    rounding), which makes the rate differentiable.
    """

    def __init__(self, channels: int, filters: tuple[int, ...] = (3, 3, 3), init_scale: float = 10.0) -> None:
        super().__init__()
        dims = (1, *filters, 1)
        scale = init_scale ** (1.0 / (len(dims) - 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.gates = nn.ParameterList()
        for k in range(len(dims) - 1):
            init = math.log(math.expm1(1.0 / scale / dims[k + 1]))
            self.matrices.append(nn.Parameter(torch.full((channels, dims[k + 1], dims[k]), init)))
            self.biases.append(nn.Parameter(torch.rand(channels, dims[k + 1], 1) - 0.5))
            if k < len(dims) - 2:
                self.gates.append(nn.Parameter(torch.zeros(channels, dims[k + 1], 1)))

    def logits(self, x: Tensor) -> Tensor:
        """f(x) for x of shape (channels, 1, n)."""
        for k, (matrix, bias) in enumerate(zip(self.matrices, self.biases, strict=True)):
            x = torch.matmul(F.softplus(matrix), x) + bias
            if k < len(self.gates):
                x = x + torch.tanh(self.gates[k]) * torch.tanh(x)
        return x

    def likelihood(self, y: Tensor) -> Tensor:
        """P(bin of width 1 centred on y) for y of shape (B, C, H, W), floored at 1e-9."""
        channels = y.shape[1]
        flat = y.transpose(0, 1).reshape(channels, 1, -1)
        lower, upper = self.logits(flat - 0.5), self.logits(flat + 0.5)
        # Evaluate on the side of the sigmoid where it is not saturated, for numerical accuracy.
        sign = -torch.sign(lower + upper).detach()
        probability = torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))
        probability = probability.clamp(min=1e-9)
        return probability.reshape(channels, y.shape[0], *y.shape[2:]).transpose(0, 1)

    @torch.no_grad()
    def integer_pmfs(self, radius: int = 64, tail: float = 1e-6) -> list[tuple[int, Tensor]]:
        """Per channel (offset, pmf over offset..offset+n-1): the integers holding all but `tail` of the mass."""
        channels = self.matrices[0].shape[0]
        support = torch.arange(-radius, radius + 1, dtype=torch.float32)
        cdf = torch.sigmoid(self.logits(support.expand(channels, 1, -1) + 0.5))[:, 0]  # c(k + 1/2)
        tables = []
        for c in range(channels):
            inside = torch.nonzero((cdf[c] > tail / 2) & (torch.cat([cdf[c].new_zeros(1), cdf[c][:-1]]) < 1 - tail / 2))
            lo, hi = int(inside.min()), int(inside.max())
            values = support[lo : hi + 1].view(1, 1, 1, -1).expand(1, channels, 1, -1)
            pmf = self.likelihood(values)[0, c, 0]
            tables.append((lo - radius, pmf / pmf.sum()))
        return tables
