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


def info_nce(latents: Tensor, pairs: int, temperature: float) -> tuple[Tensor, Tensor]:
    """(InfoNCE loss, top-1 pair accuracy) on the cosine similarity of latents: rows i and i + pairs are positives.

    Every other row of the batch is a negative (NT-Xent, as in SimCLR). Latents are L2-normalised here
    (a no-op for unit-length ones; a hybrid latent with a PAA part is not unit-length).
    """
    z = torch.nn.functional.normalize(latents.float(), dim=-1)
    similarity = z @ z.T / temperature
    similarity = similarity.masked_fill(torch.eye(len(z), dtype=torch.bool, device=z.device), float("-inf"))
    index = torch.arange(len(z), device=z.device)
    partner = (index + pairs) % (2 * pairs)
    loss = torch.nn.functional.cross_entropy(similarity, partner)
    accuracy = (similarity.argmax(1) == partner).float().mean()
    return loss, accuracy.detach()


def contrastive_sequence_loss(temperature: float, weight: float) -> LossFn:
    """Masked MSE + weight x InfoNCE over the pairs of views a batch carries (MSE alone without pairs)."""

    def loss(outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
        parts = sequence_loss(outputs, batch)
        if "pairs" not in batch:
            return parts
        nce, accuracy = info_nce(outputs["latent"], int(batch["pairs"]), temperature)
        total = parts["loss"] + weight * nce
        return {"loss": total, "mse": parts["mse"], "info_nce": nce.detach(), "pair_accuracy": accuracy}

    return loss


def rate_distortion_loss(lmbda: float) -> LossFn:
    """Bpp + lambda * 255^2 * MSE (the convention of CompressAI's published models), with its parts."""

    def loss(outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
        parts = image_loss(outputs, batch)
        total = outputs["bpp"] + lmbda * 255.0**2 * parts["loss"]
        return {"loss": total, "bpp": outputs["bpp"].detach(), "mse": parts["mse"], "psnr": parts["psnr"]}

    return loss


def variable_rate_distortion_loss(outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """Bpp + lambda * 255^2 * MSE with the lambda of the quality the model drew for this batch (`outputs["lmbda"]`)."""
    parts = image_loss(outputs, batch)
    total = outputs["bpp"] + outputs["lmbda"] * 255.0**2 * parts["loss"]
    return {"loss": total, "bpp": outputs["bpp"].detach(), "mse": parts["mse"], "psnr": parts["psnr"]}


def loss_for(model_config: object) -> LossFn:
    """The loss function of a model config: rate-distortion for codecs, else by data kind."""
    if getattr(model_config, "family", None) == "contrastive-recurrent":
        weight = float(model_config.contrastive_weight)  # type: ignore[attr-defined]
        return contrastive_sequence_loss(float(model_config.temperature), weight)  # type: ignore[attr-defined]
    if getattr(model_config, "family", None) == "hyperprior-codec":
        return variable_rate_distortion_loss
    if getattr(model_config, "family", None) == "codec":
        return rate_distortion_loss(float(model_config.lmbda))  # type: ignore[attr-defined]
    return image_loss if getattr(model_config, "data_kind", "image") == "image" else sequence_loss
