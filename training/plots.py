"""PNG plots of a run: loss curves and sample reconstructions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on training hosts
import matplotlib.pyplot as plt
import numpy as np


def plot_loss_curves(metrics_file: Path, out: Path) -> None:
    """Training and validation loss against step, log scale."""
    records = [json.loads(line) for line in metrics_file.read_text().splitlines() if line.strip()]
    fig, ax = plt.subplots(figsize=(7, 4))
    for split in ("train", "val"):
        points = [(r["step"], r["loss"]) for r in records if r["split"] == split]
        if points:
            steps, losses = zip(*points, strict=True)
            ax.plot(steps, losses, label=split, marker="o" if split == "val" else None)
    ax.set(xlabel="step", ylabel="loss (MSE)", yscale="log", title="Loss curves")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def plot_image_samples(inputs: np.ndarray, targets: np.ndarray, outputs: np.ndarray, out: Path) -> None:
    """Rows: input, target, reconstruction; arrays are (N, C, H, W) in [0, 1]."""
    n = len(inputs)
    fig, axes = plt.subplots(3, n, figsize=(1.6 * n, 5), squeeze=False)
    for row, (label, images) in enumerate((("input", inputs), ("target", targets), ("output", outputs))):
        for col in range(n):
            image = np.clip(images[col].transpose(1, 2, 0), 0, 1)
            axes[row][col].imshow(image.squeeze(-1) if image.shape[-1] == 1 else image, cmap="gray")
            axes[row][col].axis("off")
        axes[row][0].set_title(label, fontsize=8, loc="left")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def plot_sequence_samples(series: list[np.ndarray], recons: list[np.ndarray], out: Path) -> None:
    """One panel per series: the (normalised) input and its reconstruction, first feature."""
    n = len(series)
    fig, axes = plt.subplots(n, 1, figsize=(7, 1.6 * n), squeeze=False)
    for ax, x, x_hat in zip(axes[:, 0], series, recons, strict=True):
        ax.plot(x[:, 0], label="input", lw=1.2)
        ax.plot(x_hat[:, 0], label="reconstruction", lw=1.2, ls="--")
    axes[0, 0].legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def plot_error_distributions(normal: np.ndarray, abnormal: np.ndarray, out: Path) -> None:
    """Histograms of reconstruction errors for normal and abnormal series (log-spaced bins)."""
    low = max(min(normal.min(), abnormal.min()), 1e-6)
    bins = np.logspace(np.log10(low), np.log10(max(normal.max(), abnormal.max())), 40).tolist()
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.hist(normal, bins=bins, alpha=0.6, label=f"held-out normal (n={len(normal)})", density=True)
    ax.hist(abnormal, bins=bins, alpha=0.6, label=f"abnormal (n={len(abnormal)})", density=True)
    ax.set(
        xscale="log", xlabel="reconstruction error (MSE, normalised units)", ylabel="density", title="Anomaly scores"
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def plot_rd_curves(curves: dict[str, list[dict[str, Any]]], out: Path) -> None:
    """PSNR and MS-SSIM against bits per pixel, one line per method."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for method, points in curves.items():
        rates = [p["bpp"] for p in points]
        axes[0].plot(rates, [p["psnr"] for p in points], marker="o", label=method)
        axes[1].plot(rates, [p["ms_ssim"] for p in points], marker="o", label=method)
    axes[0].set(xlabel="bits per pixel", ylabel="PSNR (dB)", title="Rate-distortion (PSNR)", xlim=(0, 1.5))
    axes[1].set(xlabel="bits per pixel", ylabel="MS-SSIM", title="Rate-distortion (MS-SSIM)", xlim=(0, 1.5))
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def plot_denoise_crops(crops: list[tuple[float, dict[str, np.ndarray]]], out: Path, size: int = 128) -> None:
    """Side-by-side centre crops (uint8 HxWx3, or HxW gray) per sigma: clean, noisy and each method."""
    methods = list(crops[0][1])
    fig, axes = plt.subplots(len(crops), len(methods), figsize=(2.2 * len(methods), 2.3 * len(crops)), squeeze=False)
    for row, (sigma, images) in enumerate(crops):
        for col, method in enumerate(methods):
            image = images[method]
            top, left = max(0, (image.shape[0] - size) // 2), max(0, (image.shape[1] - size) // 2)
            crop = image[top : top + size, left : left + size]
            axes[row][col].imshow(crop, cmap="gray" if crop.ndim == 2 else None, vmin=0, vmax=255)
            axes[row][col].set_title(f"{method} (sigma {sigma:g})", fontsize=8)
            axes[row][col].axis("off")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
