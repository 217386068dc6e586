"""A hyperprior codec's hyper transforms in float64 NumPy, the synthesis one exact on every machine.

Why not ONNX graphs: the decoder indexes its probability tables by the scales the hyper-synthesis
computes, so its scales (and means) must equal the encoder's bit for bit. A float32 graph cannot promise
that across thread counts, optimisation levels, CPUs and GPUs: summation order changes the last bits,
and a scale next to a table boundary then picks another table, which derails the rest of the stream.

Exact by construction instead: the hyper-synthesis weights and biases are integers times 2^-16
(`WEIGHT_BITS`, set at export), its input is the integer hyper-latent, and every activation is rounded
to a multiple of 2^-8 (`ACTIVATION_BITS`) after its clamped ReLU (to [0, 256], as in training). Every
product is then a multiple of 2^-24 and every partial sum of a layer is below 2^29 in magnitude (fan-in
x 256 x the largest weight, checked when the transforms load), so float64 holds each partial sum
exactly: any summation order, any BLAS, any thread count gives the same numbers (for the classical
matrix product every BLAS in use computes; a Strassen-like one would form other intermediate sums). The hyper-latent is
clamped to [-CLAMP, CLAMP] first, so a hostile stream cannot push a sum out of the exact range either.

The hyper-analysis runs on the encoder only (its output is rounded and written into the stream), so it
just needs to be close to training's: float64 with the exported float32 weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

WEIGHT_BITS = 16  # hyper-synthesis weights and biases are integers x 2^-WEIGHT_BITS
ACTIVATION_BITS = 8  # its activations are rounded to multiples of 2^-ACTIVATION_BITS
CLAMP = 256.0  # activations are clamped to [0, CLAMP] (as training's ClampedReLU); z_hat to [-CLAMP, CLAMP]
EXACT_BELOW = 2.0 ** (53 - WEIGHT_BITS - ACTIVATION_BITS)  # a sum on the 2^-24 grid is exact below 2^29


@dataclass(frozen=True)
class Layer:
    """One convolution: weight (out, in, k, k) for a conv, (in, out, k, k) for a transposed one, and bias."""

    weight: np.ndarray
    bias: np.ndarray
    stride: int
    transposed: bool

    @property
    def kernel(self) -> int:
        """Kernel side."""
        return int(self.weight.shape[-1])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """(C_out, H', W') from (C_in, H, W): 'same' padding, so a stride of 2 halves (or doubles) each side."""
        return (_conv_transpose if self.transposed else _conv)(x, self.weight, self.stride) + self.bias[:, None, None]


def _conv(x: np.ndarray, weight: np.ndarray, stride: int) -> np.ndarray:
    """Cross-correlation with zero padding k // 2 (PyTorch's Conv2d with padding = k // 2)."""
    k = weight.shape[-1]
    pad = k // 2
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    height = (x.shape[1] + 2 * pad - k) // stride + 1
    width = (x.shape[2] + 2 * pad - k) // stride + 1
    windows = np.lib.stride_tricks.sliding_window_view(padded, (k, k), axis=(1, 2))[:, ::stride, ::stride]
    # (C_in, H', W', k, k) -> (H' W', C_in k k): one matrix product per layer.
    columns = windows[:, :height, :width].transpose(1, 2, 0, 3, 4).reshape(height * width, -1)
    return (weight.reshape(weight.shape[0], -1) @ columns.T).reshape(weight.shape[0], height, width)


def _conv_transpose(x: np.ndarray, weight: np.ndarray, stride: int) -> np.ndarray:
    """PyTorch's ConvTranspose2d with padding k // 2 and output_padding stride - 1 (each side x stride)."""
    c_in, height, width = x.shape
    k = weight.shape[-1]
    pad = k // 2
    # Each input position scatters weight[:, :, i, j] * x into output position (stride * y + i - pad, ...).
    contributions = weight.reshape(c_in, -1).T @ x.reshape(c_in, -1)  # (C_out k k, H W)
    contributions = contributions.reshape(weight.shape[1], k, k, height, width)
    full = np.zeros((weight.shape[1], stride * (height - 1) + k + stride - 1, stride * (width - 1) + k + stride - 1))
    for i in range(k):
        for j in range(k):
            full[:, i : i + stride * height : stride, j : j + stride * width : stride] += contributions[:, i, j]
    return full[:, pad : pad + stride * height, pad : pad + stride * width]


def _relu_on_grid(x: np.ndarray) -> np.ndarray:
    """Clamped ReLU, then rounded to the activation grid (exact in float64: scaling by 2^8 and rint are)."""
    scale = float(1 << ACTIVATION_BITS)
    return np.rint(np.clip(x, 0.0, CLAMP) * scale) / scale


def _relu(x: np.ndarray) -> np.ndarray:
    return np.clip(x, 0.0, CLAMP)


@dataclass(frozen=True)
class HyperTransforms:
    """h_a (float64, the encoder's) and h_s (fixed point, exact): see the module docstring."""

    analysis: tuple[Layer, ...]
    synthesis: tuple[Layer, ...]

    @classmethod
    def load(cls, path: Path) -> HyperTransforms:
        """Read an exported `.npz` (training.export_hyperprior): float32 h_a, integer h_s; checks the exact range."""
        with np.load(path, allow_pickle=False) as arrays:
            analysis = tuple(_layers(arrays, "h_a", fixed_point=False))
            synthesis = tuple(_layers(arrays, "h_s", fixed_point=True))
        for layer in (*analysis, *synthesis):
            if layer.stride not in (1, 2) or layer.kernel % 2 == 0 or layer.weight.ndim != 4 or layer.bias.ndim != 1:
                raise ValueError("hyper transform layers are 4-d weights of odd kernels, 1-d biases, strides 1 or 2")
        for index, layer in enumerate(synthesis):
            fan_in = layer.weight[0].size if not layer.transposed else layer.weight[:, 0].size
            bound = fan_in * CLAMP * float(np.abs(layer.weight).max()) + float(np.abs(layer.bias).max())
            if bound >= EXACT_BELOW:
                raise ValueError(f"h_s layer {index} can sum to {bound:.3g}, beyond the exact range {EXACT_BELOW:.3g}")
        return cls(analysis, synthesis)

    def analyse(self, latent: np.ndarray) -> np.ndarray:
        """The hyper-latent z (float64, not rounded) of a gained latent y' (C, h, w)."""
        x = latent.astype(np.float64)
        for layer in self.analysis[:-1]:
            x = _relu(layer(x))
        return self.analysis[-1](x)

    def synthesise(self, z_hat: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """(means, scales), each (M, height, width) float64, of an integer hyper-latent: the same everywhere."""
        x = np.clip(z_hat.astype(np.float64), -CLAMP, CLAMP)
        for layer in self.synthesis[:-1]:
            x = _relu_on_grid(layer(x))
        out = self.synthesis[-1](x)[:, :height, :width]
        half = out.shape[0] // 2
        return out[:half], out[half:]


def _layers(arrays: np.lib.npyio.NpzFile, prefix: str, fixed_point: bool) -> list[Layer]:
    """The layers `prefix`.0, .1, ... of an exported npz, integer ones scaled by 2^-WEIGHT_BITS."""
    layers = []
    index = 0
    while f"{prefix}.{index}.weight" in arrays:
        weight, bias = arrays[f"{prefix}.{index}.weight"], arrays[f"{prefix}.{index}.bias"]
        stride, transposed = (int(v) for v in arrays[f"{prefix}.{index}.layout"])
        if fixed_point:
            if weight.dtype.kind != "i" or bias.dtype.kind != "i":
                raise ValueError(f"{prefix}.{index}: fixed-point weights must be stored as integers")
            unit = 2.0**-WEIGHT_BITS
            layers.append(
                Layer(weight.astype(np.float64) * unit, bias.astype(np.float64) * unit, stride, bool(transposed))
            )
        else:
            layers.append(Layer(weight.astype(np.float64), bias.astype(np.float64), stride, bool(transposed)))
        index += 1
    if not layers:
        raise ValueError(f"no {prefix} layers in the hyper transforms file")
    return layers
