"""Losses return a dict: `loss` (what is minimised) plus parts worth logging."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

LossFn = Callable[[dict[str, Tensor], dict[str, Tensor]], dict[str, Tensor]]


def image_loss(outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """Pixel MSE against the clean target, and the PSNR it implies for [0, 1] images."""
    mse = torch.mean((outputs["x_hat"].float() - batch["target"].float()) ** 2)
    psnr = -10.0 * torch.log10(mse.detach().clamp(min=1e-10))
    return {"loss": mse, "mse": mse.detach(), "psnr": psnr}


def sequence_loss(outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """MSE over valid steps only, so padding never contributes to the loss or its gradient."""
    mask = outputs["mask"].unsqueeze(-1)
    squared = (outputs["x_hat"].float() - batch["target"].float()) ** 2 * mask
    mse = squared.sum() / (mask.sum() * squared.shape[-1]).clamp(min=1.0)
    return {"loss": mse, "mse": mse.detach()}


def loss_for(data_kind: str) -> LossFn:
    """The loss function matching a family's data kind."""
    return image_loss if data_kind == "image" else sequence_loss


def psnr_from_mse(mse: float) -> float:
    """PSNR in dB for [0, 1] signals."""
    return -10.0 * math.log10(max(mse, 1e-10))
