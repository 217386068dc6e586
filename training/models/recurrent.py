"""`recurrent`: an LSTM or GRU sequence-to-sequence autoencoder.

Dataflow:

    x (B,T,F), lengths (B,) -> RNN -> hidden state at step lengths-1 -> linear -> latent (B,L)
    latent (B,L), lengths   -> h0 = tanh(linear(latent)); the latent fed at each of max(lengths)
                               steps -> RNN -> linear -> x_hat (B,max(lengths),F)

Masking: the encoder is unidirectional and reads the state at each series' own last step, so
padding after a series cannot change its latent. The loss masks padded steps (see losses.py).
Everything is plain tensor ops (no packing), so the ONNX graph keeps batch and time symbolic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import Tensor, nn

from training.registry import register_family


@dataclass
class RecurrentConfig:
    """Hyper-parameters of the `recurrent` family."""

    family: ClassVar[str] = "recurrent"
    data_kind: ClassVar[str] = "sequence"
    features: int = 1
    """Values per time step (1 for a univariate series)."""
    cell: Literal["lstm", "gru"] = "lstm"
    """Recurrent cell of encoder and decoder."""
    hidden_size: int = 64
    """Hidden state size of each recurrent layer."""
    num_layers: int = 1
    """Stacked recurrent layers in encoder and decoder."""
    latent_size: int = 16
    """Size of the latent vector (the embedding) of a whole series."""

    def __post_init__(self) -> None:
        if self.cell not in ("lstm", "gru"):
            raise ValueError("cell must be 'lstm' or 'gru'")
        if min(self.features, self.hidden_size, self.num_layers, self.latent_size) < 1:
            raise ValueError("features, hidden_size, num_layers and latent_size must be positive")


def _rnn(config: RecurrentConfig, input_size: int) -> nn.LSTM | nn.GRU:
    cls = nn.LSTM if config.cell == "lstm" else nn.GRU
    return cls(input_size, config.hidden_size, num_layers=config.num_layers, batch_first=True)


def length_mask(lengths: Tensor, steps: int) -> Tensor:
    """(B, steps) float mask: 1 where the step is inside the series."""
    return (torch.arange(steps, device=lengths.device)[None, :] < lengths[:, None]).float()


@register_family("recurrent", RecurrentConfig)
class RecurrentAutoencoder(nn.Module):
    """Sequence autoencoder; see the module docstring for the dataflow."""

    has_latent_graphs = True

    def __init__(self, config: RecurrentConfig) -> None:
        super().__init__()
        self.config: RecurrentConfig = config
        self.encoder_rnn = _rnn(config, config.features)
        self.to_latent = nn.Linear(config.hidden_size, config.latent_size)
        self.to_state = nn.Linear(config.latent_size, config.num_layers * config.hidden_size)
        self.decoder_rnn = _rnn(config, config.latent_size)
        self.to_output = nn.Linear(config.hidden_size, config.features)

    def encode(self, x: Tensor, lengths: Tensor) -> Tensor:
        """Latent (B, L) of padded series (B, T, F) with their true lengths (B,)."""
        outputs, _ = self.encoder_rnn(x)
        last = (lengths - 1).clamp(min=0).view(-1, 1, 1).expand(-1, 1, outputs.shape[-1])
        return self.to_latent(outputs.gather(1, last).squeeze(1))

    def decode(self, latent: Tensor, lengths: Tensor) -> Tensor:
        """Reconstruction (B, max(lengths), F); steps past a series' length are meaningless."""
        layers, hidden = self.config.num_layers, self.config.hidden_size
        h0 = torch.tanh(self.to_state(latent)).view(-1, layers, hidden).transpose(0, 1).contiguous()
        # Broadcasting against a (1, T, 1) tensor keeps T symbolic in the traced graph.
        max_length = lengths.max()
        steps = torch.arange(max_length, device=latent.device).view(1, -1, 1)  # type: ignore[call-overload]
        inputs = latent.unsqueeze(1) + torch.zeros_like(steps, dtype=latent.dtype)
        state = (h0, torch.zeros_like(h0)) if self.config.cell == "lstm" else h0
        outputs, _ = self.decoder_rnn(inputs, state)
        return self.to_output(outputs)

    def forward_graph(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """(reconstruction, latent): the exported autoencoder graph's outputs."""
        latent = self.encode(x, lengths)
        return self.decode(latent, lengths), latent

    def forward(self, x: Tensor, lengths: Tensor) -> dict[str, Tensor]:
        """Encode and decode; the mask marks the valid steps for the loss."""
        latent = self.encode(x, lengths)
        x_hat = self.decode(latent, lengths)
        return {"x_hat": x_hat, "latent": latent, "mask": length_mask(lengths, x_hat.shape[1])}
