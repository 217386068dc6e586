"""Limits on what actually runs: an image graph runs on the image padded to its stride multiple.

A 1 x 4096 image runs as 16 x 4096 on a model with stride 16, so the pixel limit
(`AE_MAX_IMAGE_PIXELS`) counts the padded size, and each padded side has its own cap
(`AE_MAX_IMAGE_SIDE`). One rule for every way a size reaches a graph: an image's header, a latent's
shape times the downsampling factor, a codec stream's header. Callers check it from the declared
size, before any array of that size is allocated.
"""

from __future__ import annotations

from dataclasses import dataclass

from service.config import Settings
from service.errors import PayloadTooLargeError


@dataclass(frozen=True)
class SizeLimits:
    """The most pixels, and the longest side, of the padded image a graph may run on."""

    max_pixels: int
    max_side: int

    @classmethod
    def from_settings(cls, settings: Settings) -> SizeLimits:
        """The limits `settings` configure."""
        return cls(settings.max_image_pixels, settings.max_image_side)


def padded(side: int, multiple: int) -> int:
    """`side` rounded up to a multiple of `multiple` (what `pad_to_multiple` makes of it)."""
    return -(-side // multiple) * multiple


def check_run_size(what: str, height: int, width: int, multiple: int, limits: SizeLimits) -> None:
    """413 when `height` x `width`, padded to `multiple`, has too many pixels or too long a side.

    `what` starts the message, e.g. "image of": "image of 1x3000 pixels exceeds ...".
    """
    run_height, run_width = padded(height, multiple), padded(width, multiple)
    runs_as = f"it runs padded to {run_height}x{run_width} (height x width, a multiple of {multiple})"
    if run_height * run_width > limits.max_pixels:
        raise PayloadTooLargeError(
            f"{what} {height}x{width} pixels exceeds the limit of {limits.max_pixels} pixels: "
            f"{runs_as} = {run_height * run_width} pixels"
        )
    if max(run_height, run_width) > limits.max_side:
        raise PayloadTooLargeError(
            f"{what} {height}x{width} pixels exceeds the limit of {limits.max_side} pixels per side: {runs_as}"
        )
