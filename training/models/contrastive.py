"""`contrastive-recurrent`: a convolutional front end, a recurrent encoder pooled over time, a unit-length latent.

Dataflow:

    x (B,T,F), lengths (B,) -> zero the padding -> conv k7 -> GELU -> conv k5 stride 2 -> GELU
        -> conv k5 -> GELU (padding re-zeroed after each) -> RNN over ceil(T/2) steps
        -> [state at the last valid step, masked mean, masked max, means over K equal fractions of the
            series (`segments`)] -> MLP -> L2-normalise -> learned part (B, L - P*F)
    with `paa_bins` P > 0 (a hybrid embedding): latent = [w * PAA_P(x) / sqrt(P), learned part],
        PAA_P the exact area-weighted resampling of each valid series to P bins (no parameters), w the
        trained `paa_weight` or, once exported, `served_paa_weight` (the decoder scales it back);
        without: latent = learned part (B,L), unit-length
    latent (B,L), lengths -> the `recurrent` family's decoder -> x_hat (B,max(lengths),F)

Trained on pairs of augmented views of a series (see training/corpus.py) with InfoNCE on the latents
(the two views of a series are positives, every other series in the batch a negative) beside the
masked reconstruction MSE. The latent is unit-length, so the Euclidean distance between embeddings
is a monotone function of their cosine similarity, the quantity the contrastive loss shapes.

The hybrid keeps the series' coarse shape exactly (its PAA: where things happen, which invariances
learned from augmented views give away) and spends the rest of the latent on learned features. InfoNCE
then shapes the whole latent (cosine of the hybrid), so the learned part is pushed towards what tells
series apart that the PAA does not; the decoder reads the whole latent.

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
    paa_bins: int = 0
    """Bins of the exact PAA the latent starts with (a hybrid embedding; features x bins of the latent); 0: none."""
    paa_weight: float = 1.0
    """Scale of the PAA part in training (norm <= this for a z-normalised series) beside the unit-length rest."""
    served_paa_weight: float | None = None
    """Scale of the PAA part in the exported latent when chosen after training (set at export); None: paa_weight."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.conv_channels < 1 or self.temperature <= 0 or self.contrastive_weight < 0 or self.segments < 0:
            raise ValueError("conv_channels, temperature must be positive; contrastive_weight, segments non-negative")
        weights = (self.paa_weight, self.served_paa_weight or self.paa_weight)
        if self.paa_bins < 0 or min(weights) <= 0 or self.paa_bins * self.features >= self.latent_size:
            raise ValueError("paa_bins must be non-negative, PAA weights positive, paa_bins x features < latent_size")

    @property
    def learned_size(self) -> int:
        """Size of the learned (unit-length) part of the latent."""
        return self.latent_size - self.paa_bins * self.features


def _steps_mask(reference: Tensor, lengths: Tensor) -> Tensor:
    """(B, 1, T) float mask of valid steps of a (B, C, T) tensor, built without arange on a shape."""
    steps = torch.ones_like(reference[:, :1, :]).cumsum(-1) - 1.0
    return (steps < lengths.view(-1, 1, 1).to(reference.dtype)).to(reference.dtype)


def paa_weights(reference: Tensor, lengths: Tensor, bins: int) -> Tensor:
    """(B, T, bins) weights of the exact area-weighted resampling of each series' valid steps to `bins` bins.

    Step t of a series of L steps covers [t * bins / L, (t + 1) * bins / L) on the bin axis; its weight in
    bin j is the overlap with [j, j + 1), so every bin's weights sum to 1 and a bin's value is the mean of
    the series over its span. A series shorter than `bins` has its values repeated (area-weighted).
    `reference` is any (B, T, ...) tensor; the step index is built from it, not from arange on a shape,
    so the time axis stays symbolic in an exported graph.
    """
    steps = torch.ones_like(reference[:, :, :1]).cumsum(1) - 1.0  # (B, T, 1)
    scale = bins / lengths.clamp(min=1).to(reference.dtype).view(-1, 1, 1)
    ids = torch.arange(bins, dtype=reference.dtype, device=reference.device).view(1, 1, -1)
    start, end = steps * scale, (steps + 1.0) * scale
    overlap = (torch.minimum(end, ids + 1.0) - torch.maximum(start, ids)).clamp(min=0.0)
    valid = (steps < lengths.view(-1, 1, 1).to(reference.dtype)).to(reference.dtype)
    return overlap * valid


def paa(x: Tensor, lengths: Tensor, bins: int) -> Tensor:
    """(B, F * bins): the area-weighted PAA (see `paa_weights`) of padded series (B, T, F), feature-major."""
    return (paa_weights(x, lengths, bins).transpose(1, 2) @ x).transpose(1, 2).flatten(1)


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
            nn.Linear((3 + config.segments) * hidden, 2 * hidden), nn.GELU(), nn.Linear(2 * hidden, config.learned_size)
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
        """Latent (B, L) of padded series (B, T, F) with their true lengths (B,): [scaled PAA,] learned part."""
        learned = self._learned(x, lengths)
        bins = self.config.paa_bins
        if not bins:
            return learned
        weight = self.config.served_paa_weight or self.config.paa_weight
        coarse = paa(x, lengths, bins) * (weight / bins**0.5)
        return torch.cat([coarse, learned], dim=-1)

    def decode(self, latent: Tensor, lengths: Tensor) -> Tensor:
        """Reconstruction (B, max(lengths), F); a served PAA weight is scaled back to the trained one first."""
        served = self.config.served_paa_weight
        if served is not None and self.config.paa_bins:
            size = self.config.paa_bins * self.config.features
            latent = torch.cat([latent[:, :size] * (self.config.paa_weight / served), latent[:, size:]], dim=-1)
        return super().decode(latent, lengths)

    def _learned(self, x: Tensor, lengths: Tensor) -> Tensor:
        """The unit-length learned part (B, learned_size) of the latent."""
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
