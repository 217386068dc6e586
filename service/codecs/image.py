"""Images <-> arrays: padding to the model's stride multiple and cropping back."""

from __future__ import annotations

import numpy as np


def pad_to_multiple(batch: np.ndarray, multiple: int) -> np.ndarray:
    """Edge-replicate the bottom and right of (N, C, H, W) so H and W are multiples of `multiple`.

    Edge padding (not zeros) keeps the border statistics natural, so the crop is unaffected by it;
    torch's `replicate` mode is the same operation, which keeps training and serving in parity.
    """
    pad_h = -batch.shape[-2] % multiple
    pad_w = -batch.shape[-1] % multiple
    if pad_h == 0 and pad_w == 0:
        return batch
    return np.pad(batch, ((0, 0), (0, 0), (0, pad_h), (0, pad_w)), mode="edge")
