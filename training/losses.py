"""Losses return a dict: `loss` (what is minimised) plus parts worth logging."""

from __future__ import annotations

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


def rate_distortion_loss(lmbda: float) -> LossFn:
    """Bpp + lambda * 255^2 * MSE (the convention of CompressAI's published models), with its parts."""

    def loss(outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
        parts = image_loss(outputs, batch)
        total = outputs["bpp"] + lmbda * 255.0**2 * parts["loss"]
        return {"loss": total, "bpp": outputs["bpp"].detach(), "mse": parts["mse"], "psnr": parts["psnr"]}

    return loss


def loss_for(model_config: object) -> LossFn:
    """The loss function of a model config: rate-distortion for codecs, else by data kind."""
    if getattr(model_config, "family", None) == "codec":
        return rate_distortion_loss(float(model_config.lmbda))  # type: ignore[attr-defined]
    return image_loss if getattr(model_config, "data_kind", "image") == "image" else sequence_loss
