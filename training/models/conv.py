"""`conv`: a fully convolutional image autoencoder.

Dataflow (each encoder stage halves height and width, so the stride multiple is 2**stages):

    x (B,C,H,W) -> pad to the stride multiple -> [conv s2 + convs] x stages -> 3x3 conv -> latent
    latent (B,L,H/f,W/f) -> 3x3 conv -> [transposed conv s2 + convs] x stages -> 3x3 conv -> x_hat -> crop

Options:
- `dense_latent`: flatten the spatial latent into a vector of that size (the seed design). This
  fixes the input size to `input_size`; other sizes raise instead of being resized.
- `skip_connections`: U-Net style concatenation of encoder features into the decoder (denoising).
  The decoder then needs the encoder's features, so only the full autoencoder graph is exported.
- `residual`: predict a correction added to the input (with skip connections only).
- `full_resolution_blocks`: 3x3 convolutions at the input's resolution before the first downsampling
  and after the last upsampling (with skip connections, the first ones' features feed the last ones).
  Without them the network's only full-resolution layers are the last upsampling stage and the head:
  cheap, but a denoiser then reconstructs fine detail from half-resolution features.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn

from training.registry import register_family


@dataclass
class ConvConfig:
    """Hyper-parameters of the `conv` family."""

    family: ClassVar[str] = "conv"
    data_kind: ClassVar[str] = "image"
    channels: int = 3
    """Image channels: 1 (gray) or 3 (RGB)."""
    widths: tuple[int, ...] = (32, 64, 128)
    """Channels of each encoder stage; each stage halves height and width."""
    latent_channels: int = 8
    """Channels of the latent (the bottleneck)."""
    blocks_per_stage: int = 1
    """Convolution blocks after each stage's downsampling (and before its upsampling)."""
    dense_latent: int | None = None
    """Size of a dense (fully connected) bottleneck; needs input_size. Fully convolutional when unset."""
    input_size: tuple[int, int] | None = None
    """[H, W] the model is fixed to (required by dense_latent); any size when unset."""
    skip_connections: bool = False
    """U-Net style skips from encoder to decoder (no separate encoder/decoder graphs then)."""
    residual: bool = False
    """Predict the correction added to the input (denoisers); needs skip_connections."""
    # ReLU fuses into the convolution in ONNX Runtime; GELU runs as separate (erf) kernels.
    activation: Literal["gelu", "relu"] = "gelu"
    """Activation after each convolution."""
    # Upsampling transposed-convolution kernel: 4 (overlapping) or 2 (stride-sized, 4x cheaper).
    upsample_kernel: Literal[2, 4] = 4
    """Kernel of the upsampling transposed convolutions: 4 (overlapping) or 2 (stride-sized)."""
    full_resolution_blocks: int = 0
    """Convolutions at the input's resolution before the first and after the last stage."""

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise ValueError("channels must be 1 or 3")
        if not self.widths:
            raise ValueError("widths needs at least one stage")
        if self.dense_latent is not None and self.input_size is None:
            raise ValueError("a dense bottleneck fixes the input size: set input_size = [H, W]")
        if self.input_size is not None and any(s % self.stride_multiple for s in self.input_size):
            raise ValueError(f"input_size must be a multiple of the stride {self.stride_multiple}")
        if self.activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be gelu or relu, got {self.activation!r}")
        if self.full_resolution_blocks < 0:
            raise ValueError("full_resolution_blocks must be 0 or more")
        if self.upsample_kernel not in (2, 4):
            raise ValueError(f"upsample_kernel must be 2 or 4, got {self.upsample_kernel!r}")
        if self.residual and not self.skip_connections:
            raise ValueError("residual output needs skip_connections (the decoder must see the input)")
        if self.dense_latent is not None and self.skip_connections:
            raise ValueError("skip connections bypass a dense bottleneck; choose one")

    @property
    def stride_multiple(self) -> int:
        """Height and width must be multiples of this inside the graph."""
        return 2 ** len(self.widths)


_ACTIVATIONS: dict[str, type[nn.Module]] = {"gelu": nn.GELU, "relu": nn.ReLU}


def _conv_block(c_in: int, c_out: int, activation: str) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), _ACTIVATIONS[activation]())


def _stage(c_in: int, c_out: int, blocks: int, first: nn.Module, activation: str) -> nn.Sequential:
    layers: list[nn.Module] = [first, _ACTIVATIONS[activation]()]
    layers += [_conv_block(c_out, c_out, activation) for _ in range(blocks)]
    return nn.Sequential(*layers)


def _upsample(c_in: int, c_out: int, kernel: int) -> nn.ConvTranspose2d:
    # Both kernels double H and W exactly: (k=4, p=1) overlaps neighbouring outputs, (k=2, p=0) does not.
    return nn.ConvTranspose2d(c_in, c_out, kernel, stride=2, padding=(kernel - 2) // 2)


def pad_to_multiple(x: Tensor, multiple: int) -> Tensor:
    """Edge-replicate the bottom and right so H and W are multiples (numpy `edge` is the same)."""
    pad_h = -x.shape[-2] % multiple
    pad_w = -x.shape[-1] % multiple
    if pad_h == 0 and pad_w == 0:
        return x
    return F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")


@register_family("conv", ConvConfig)
class ConvAutoencoder(nn.Module):
    """Convolutional autoencoder; see the module docstring for the dataflow."""

    def __init__(self, config: ConvConfig) -> None:
        super().__init__()
        self.config: ConvConfig = config
        widths, blocks, act = config.widths, config.blocks_per_stage, config.activation
        skip = 2 if config.skip_connections else 1
        full = config.full_resolution_blocks

        def full_resolution(c_in: int) -> nn.Sequential | None:
            # Nothing is built without them: no extra draws from the seeded initialisation.
            if not full:
                return None
            return _stage(c_in, widths[0], full - 1, nn.Conv2d(c_in, widths[0], 3, padding=1), act)

        # stem: input -> widths[0] at full resolution; tail: the mirror after the last upsampling.
        self.stem = full_resolution(config.channels)
        self.tail = full_resolution(widths[0] * skip)
        ins = (widths[0] if full else config.channels, *widths[:-1])
        self.down = nn.ModuleList(
            _stage(c_in, c_out, blocks, nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), act)
            for c_in, c_out in zip(ins, widths, strict=True)
        )
        self.to_latent = nn.Conv2d(widths[-1], config.latent_channels, 3, padding=1)
        self.from_latent = _conv_block(config.latent_channels, widths[-1], act)
        outs = tuple(reversed((widths[0], *widths[:-1])))
        self.up = nn.ModuleList(
            _stage(c * skip, c_out, blocks, _upsample(c * skip, c_out, config.upsample_kernel), act)
            for c, c_out in zip(reversed(widths), outs, strict=True)
        )
        head_in = widths[0] + (config.channels if config.skip_connections else 0)
        self.head = nn.Conv2d(head_in, config.channels, 3, padding=1)
        if config.dense_latent is not None:
            assert config.input_size is not None
            h, w = (s // config.stride_multiple for s in config.input_size)
            self._grid = (config.latent_channels, h, w)
            flat = config.latent_channels * h * w
            self.to_vector = nn.Linear(flat, config.dense_latent)
            # The decoder's dense layer must produce exactly the grid it reshapes to (the seed's bug).
            self.from_vector = nn.Sequential(nn.Linear(config.dense_latent, flat), _ACTIVATIONS[act]())

    @property
    def has_latent_graphs(self) -> bool:
        """Whether encoder and decoder can run apart (not with skip connections)."""
        return not self.config.skip_connections

    def _check_size(self, x: Tensor) -> None:
        size = self.config.input_size
        if size is not None and tuple(x.shape[-2:]) != tuple(size):
            raise ValueError(
                f"this model has a dense bottleneck and needs {size[0]}x{size[1]} input, "
                f"got {x.shape[-2]}x{x.shape[-1]}"
            )

    def _encode_features(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        # With a stem its output comes first; the decoder takes the stage features from the end.
        features = []
        if self.stem is not None:
            x = self.stem(x)
            features.append(x)
        for stage in self.down:
            x = stage(x)
            features.append(x)
        latent = self.to_latent(x)
        if self.config.dense_latent is not None:
            latent = self.to_vector(latent.flatten(1))
        return latent, features

    def encode(self, x: Tensor) -> Tensor:
        """Latent of an input whose H and W are already multiples of the stride."""
        self._check_size(x)
        return self._encode_features(x)[0]

    def _decode_features(self, latent: Tensor, features: list[Tensor] | None, x: Tensor | None) -> Tensor:
        if self.config.dense_latent is not None:
            latent = self.from_vector(latent).view(-1, *self._grid)
        y = self.from_latent(latent)
        for i, stage in enumerate(self.up):
            if features is not None:
                y = torch.cat([y, features[-1 - i]], dim=1)
            y = stage(y)
        if self.tail is not None:
            if features is not None:
                y = torch.cat([y, features[0]], dim=1)
            y = self.tail(y)
        if x is not None:
            y = torch.cat([y, x], dim=1)
        y = self.head(y)
        if self.config.residual:
            assert x is not None
            y = x + y
            # Clamping in training would zero the gradient of overshooting pixels; clamp only at inference.
            return y if self.training else y.clamp(0.0, 1.0)
        return torch.sigmoid(y)

    def decode(self, latent: Tensor) -> Tensor:
        """Image (padded size) from a latent; not available with skip connections."""
        if not self.has_latent_graphs:
            raise ValueError("a model with skip connections has no standalone decoder")
        return self._decode_features(latent, None, None)

    def reconstruct_padded(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(x_hat, latent) for an input already padded to the stride multiple."""
        self._check_size(x)
        latent, features = self._encode_features(x)
        if self.config.skip_connections:
            return self._decode_features(latent, features, x), latent
        return self._decode_features(latent, None, None), latent

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """Reconstruct any H x W: pad to the stride multiple, run, crop back."""
        height, width = x.shape[-2:]
        x_hat, latent = self.reconstruct_padded(pad_to_multiple(x, self.config.stride_multiple))
        return {"x_hat": x_hat[..., :height, :width], "latent": latent}
