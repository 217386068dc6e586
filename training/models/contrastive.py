"""`contrastive-recurrent`: a convolutional front end, a recurrent encoder pooled over time, a unit-length latent.

Dataflow:

    x (B,T,F), lengths (B,) -> zero the padding -> conv k7 -> GELU -> conv k5 stride 2 -> GELU
        -> conv k5 -> GELU (padding re-zeroed after each) -> RNN over ceil(T/2) steps
        -> [state at the last valid step, masked mean, masked max, means over K equal fractions of the
            series (`segments`)] -> MLP -> L2-normalise -> latent (B,L)
    latent (B,L), lengths -> the `recurrent` family's decoder -> x_hat (B,max(lengths),F)

Trained on pairs of augmented views of a series (see training/corpus.py) with InfoNCE on the latents
(the two views of a series are positives, every other series in the batch a negative) beside the
masked reconstruction MSE. The latent is unit-length, so the Euclidean distance between embeddings
is a monotone function of their cosine similarity, the quantity the contrastive loss shapes.

Masking: every layer sees zeros past a series' own length (as a lone series sees the convolutions'
zero padding) and pooling reads valid steps only, so padding in a batch cannot change a latent.
The graph keeps the recurrent family's interface (sequences + lengths -> latent / reconstruction).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import Tensor, nn
from torch.nn import functional

from training.models.recurrent import RecurrentAutoencoder, RecurrentConfig, _rnn
from training.registry import register_family

_NEGATIVE = 1e4  # masked max: padded steps are pushed this far below any real activation


@dataclass
class ContrastiveRecurrentConfig(RecurrentConfig):
    """Hyper-parameters of the `contrastive-recurrent` family."""

    family: ClassVar[str] = "contrastive-recurrent"
    data_kind: ClassVar[str] = "sequence"
    features: int = 1
    """Values per time step (1 for a univariate series)."""
    cell: Literal["lstm", "gru"] = "gru"
    """Recurrent cell of encoder and decoder."""
    hidden_size: int = 128
    """Hidden state size of each recurrent layer."""
    num_layers: int = 1
    """Stacked recurrent layers in encoder and decoder."""
    latent_size: int = 64
    """Size of the unit-length latent vector (the embedding) of a whole series."""
    conv_channels: int = 64
    """Channels of the convolutional front end (which halves the steps the RNN reads)."""
    temperature: float = 0.1
    """InfoNCE temperature on the cosine similarity of latents."""
    contrastive_weight: float = 1.0
    """Weight of the InfoNCE loss (the reconstruction MSE has weight 1)."""
    segments: int = 0
    """Equal fractions of a series whose RNN outputs are also averaged apart (where things happen); 0: none."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.conv_channels < 1 or self.temperature <= 0 or self.contrastive_weight < 0 or self.segments < 0:
            raise ValueError("conv_channels, temperature must be positive; contrastive_weight, segments non-negative")


def _steps_mask(reference: Tensor, lengths: Tensor) -> Tensor:
    """(B, 1, T) float mask of valid steps of a (B, C, T) tensor, built without arange on a shape."""
    steps = torch.ones_like(reference[:, :1, :]).cumsum(-1) - 1.0
    return (steps < lengths.view(-1, 1, 1).to(reference.dtype)).to(reference.dtype)


@register_family("contrastive-recurrent", ContrastiveRecurrentConfig)
class ContrastiveRecurrentAutoencoder(RecurrentAutoencoder):
    """Conv + RNN encoder with pooled, unit-length latents; see the module docstring for the dataflow."""

    def __init__(self, config: ContrastiveRecurrentConfig) -> None:
        super().__init__(config)  # the decoder (to_state, decoder_rnn, to_output) is the recurrent family's
        self.config: ContrastiveRecurrentConfig = config
        channels = config.conv_channels
        self.conv_in = nn.Conv1d(config.features, channels, 7, padding=3)
        self.conv_down = nn.Conv1d(channels, channels, 5, stride=2, padding=2)
        self.conv_mid = nn.Conv1d(channels, channels, 5, padding=2)
        # Replaces the recurrent family's encoder RNN (it reads the front end's channels, not the series).
        self.encoder_rnn = _rnn(config, channels)
        hidden = config.hidden_size
        # Pooled features -> latent: an MLP where the recurrent family has one linear layer.
        self.to_latent = nn.Sequential(  # type: ignore[assignment]
            nn.Linear((3 + config.segments) * hidden, 2 * hidden), nn.GELU(), nn.Linear(2 * hidden, config.latent_size)
        )

    def _front_end(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(features (B, T', C), mask (B, T', 1), lengths in front-end steps)."""
        h = x.transpose(1, 2)
        mask = _steps_mask(h, lengths)
        h = functional.gelu(self.conv_in(h * mask)) * mask
        short = torch.div(lengths + 1, 2, rounding_mode="floor")  # ceil(lengths / 2)
        h = functional.gelu(self.conv_down(h))
        mask = _steps_mask(h, short)
        h = functional.gelu(self.conv_mid(h * mask)) * mask
        return h.transpose(1, 2), mask.transpose(1, 2), short

    def encode(self, x: Tensor, lengths: Tensor) -> Tensor:
        """Unit-length latent (B, L) of padded series (B, T, F) with their true lengths (B,)."""
        h, mask, short = self._front_end(x, lengths)
        outputs, _ = self.encoder_rnn(h)
        last_index = (short - 1).clamp(min=0).view(-1, 1, 1).expand(-1, 1, outputs.shape[-1])
        last = outputs.gather(1, last_index).squeeze(1)
        mean = (outputs * mask).sum(1) / short.view(-1, 1).to(outputs.dtype)
        peak = (outputs - (1.0 - mask) * _NEGATIVE).amax(1)
        pooled = [last, mean, peak]
        if self.config.segments:
            pooled.append(self._segment_means(outputs, mask, short))
        return functional.normalize(self.to_latent(torch.cat(pooled, dim=-1)), dim=-1)

    def _segment_means(self, outputs: Tensor, mask: Tensor, short: Tensor) -> Tensor:
        """(B, K * H): means of the outputs over K equal fractions of each series' own valid steps.

        A learned PAA: step t of a series of n steps falls in segment floor(t * K / n), whatever n is.
        """
        k = self.config.segments
        steps = mask.cumsum(1) - 1.0  # (B, T', 1): 0, 1, ... over valid steps
        segment = torch.floor(steps * k / short.view(-1, 1, 1).to(outputs.dtype)).clamp(max=k - 1)
        ids = torch.arange(k, dtype=outputs.dtype, device=outputs.device).view(1, 1, -1)
        weights = (segment == ids).to(outputs.dtype) * mask  # (B, T', K)
        sums = weights.transpose(1, 2) @ outputs  # (B, K, H)
        means = sums / weights.sum(1).clamp(min=1.0).unsqueeze(-1)
        return means.flatten(1)
