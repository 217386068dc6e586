"""8-bit pixels -> PNG bytes: fpng for RGB and RGBA at the fast level, Pillow's zlib otherwise.

fpng (Rich Geldreich's encoder, Python package `fpng`) writes a standard PNG with its own fast
deflate. On a 256x256 photo crop it took 0.18 ms against Pillow's 4.0 ms at zlib level 1, for an
answer about a third larger (docs/benchmarks.md, "PNG encoder"). So `AE_PNG_COMPRESS_LEVEL` chooses:

1. level 1 (the default, "fast"): fpng for (H, W, 3) and (H, W, 4) uint8 arrays;
2. every other level (0 stores, 9 is smallest), grayscale and any other array: Pillow at that level;
3. fpng not importable (a platform without its wheel) or failing on an array: Pillow, same level.

Either way the PNG decodes to exactly the given pixels. Importing fpng registers an extra Pillow save
format, "FPNG", and changes nothing about Pillow's own "PNG".
"""

from __future__ import annotations

import importlib
import io
import logging
from types import ModuleType

import numpy as np
from PIL import Image

FAST_LEVEL = 1
_FPNG_CHANNELS = (3, 4)

logger = logging.getLogger(__name__)


def _import_fpng() -> ModuleType | None:
    """The fpng module, or None where it cannot be imported (Pillow then answers everything)."""
    try:
        return importlib.import_module("fpng")
    except ImportError:
        return None


_fpng = _import_fpng()


def _fpng_accepts(pixels: np.ndarray) -> bool:
    """Whether fpng can write `pixels`: 8-bit RGB or RGBA only (it would silently cast other dtypes)."""
    return (
        pixels.dtype == np.uint8
        and pixels.ndim == 3
        and pixels.shape[2] in _FPNG_CHANNELS
        and pixels.shape[0] > 0
        and pixels.shape[1] > 0
    )


def _encode_fpng(fpng: ModuleType, pixels: np.ndarray) -> bytes | None:
    """The PNG fpng writes, or None when it fails (it answers empty bytes on sizes it refuses)."""
    try:
        encoded = fpng.from_ndarray(np.ascontiguousarray(pixels))
    except (TypeError, ValueError, RuntimeError, AttributeError) as error:
        logger.warning("fpng failed (%s); encoding the PNG with Pillow", type(error).__name__)
        return None
    return bytes(encoded) if encoded else None


def _encode_pillow(pixels: np.ndarray, level: int) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG", compress_level=level)
    return out.getvalue()


def encode_png(pixels: np.ndarray, level: int = FAST_LEVEL) -> bytes:
    """(H, W) or (H, W, C) uint8 -> PNG bytes that decode to exactly `pixels`."""
    if level == FAST_LEVEL and _fpng is not None and _fpng_accepts(pixels):
        encoded = _encode_fpng(_fpng, pixels)
        if encoded is not None:
            return encoded
    return _encode_pillow(pixels, level)
