"""The tile grid of a tiled codec stream: S x S tiles in raster order, the last row and column cut.

A stream's header holds the tile side S (0: untiled); the grid follows from the image size, so a
stream carries no tile coordinates. Tile sides are a multiple of `TILE_MULTIPLE` and at least
`MIN_TILE_SIDE`: every codec's stride divides them (tiles other than the last row and column need no
padding), and an image within the pixel limit has at most a few thousand tiles (each one graph run),
whatever side a hostile stream declares.
"""

from __future__ import annotations

from typing import NamedTuple

MIN_TILE_SIDE = 128
TILE_MULTIPLE = 64


class Box(NamedTuple):
    """A tile's place in the image, in pixels."""

    top: int
    left: int
    height: int
    width: int


def tile_boxes(height: int, width: int, side: int) -> list[Box]:
    """The tiles of a `height` x `width` image in raster order; one box covering it when `side` is 0."""
    if side == 0:
        return [Box(0, 0, height, width)]
    return [
        Box(top, left, min(side, height - top), min(side, width - left))
        for top in range(0, height, side)
        for left in range(0, width, side)
    ]


def tile_side_problem(side: int) -> str | None:
    """Why `side` cannot be a tile side, or None when it can (0, untiled, always can)."""
    if side == 0 or (side >= MIN_TILE_SIDE and side % TILE_MULTIPLE == 0 and side < 1 << 16):
        return None
    return f"a tile side is 0 (untiled) or a multiple of {TILE_MULTIPLE} from {MIN_TILE_SIDE} to 65472"
