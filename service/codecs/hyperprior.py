"""Entropy coding of a variable-rate mean-scale hyperprior codec's latent (training/models/hyperprior.py).

One payload (a tile's) holds, in one range-coded stream:

1. the hyper-latent z_hat = round(h_a(y * gain)), channel by channel, with per-channel integer tables
   (a factorized prior, as the ladder codes its latent), escaped outside their supports;
2. the latent's residuals round(y * gain - mean), grouped by scale index: the hyper-synthesis gives each
   latent element a mean and a scale of y (before the gain), the scale picks one of a fixed set of
   discretised Gaussian tables (the smallest table scale not below it, as CompressAI's
   `GaussianConditional`), shifted by the channel's gain in table steps (the tables are log-spaced, so
   scaling by the gain is a shift; `table_shift`), and each table codes its elements in raster order,
   escaped outside its support. The mean is h_s's times the gain.

The decoder reads z_hat, runs the same hyper-synthesis (bit-exact everywhere: service.codecs.hyper_transforms),
so it knows every element's table and mean, reads the residuals and gives the synthesis graph
(residual + mean) * inverse_gain.

`quality` in [0, 1] picks the gains: log-linear between the two nearest of the model's trained levels.
Streams carry it as a 16-bit fraction (service.codecs.bitstream), and the encoder codes with that
rounded value, so both sides use the same gains.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import constriction
import numpy as np

from service.codecs.entropy import EntropyTables
from service.codecs.hyper_transforms import CLAMP, HyperTransforms
from service.errors import DecodingError

QUALITY_STEPS = 65535  # a stream's quality is a u16: quality = q / QUALITY_STEPS


def quantized_quality(quality: float) -> int:
    """The u16 a stream carries for `quality` in [0, 1]."""
    if not 0.0 <= quality <= 1.0:
        raise ValueError(f"quality {quality} is outside [0, 1]")
    return round(quality * QUALITY_STEPS)


def hyper_latent_size(rows: int, columns: int) -> tuple[int, int]:
    """Z's size for a latent of `rows` x `columns`: two stride-2 convolutions, each rounding up."""
    return (rows + 3) // 4, (columns + 3) // 4  # ceil(ceil(n / 2) / 2) == ceil(n / 4)


@contextmanager
def _undecodable_as_400() -> Iterator[None]:
    """Invalid data in a payload is the stream's fault: 400 (constriction raises AssertionError or ValueError)."""
    try:
        yield
    except (AssertionError, ValueError, RuntimeError) as error:
        raise DecodingError("bitstream payload could not be decoded") from error


class HyperpriorEntropyModel:
    """Tables, gains and hyper transforms of a hyperprior codec; codes its latents (see the module doc)."""

    variable_rate = True

    def __init__(self, tables_path: Path, transforms_path: Path) -> None:
        raw, transforms_raw = tables_path.read_bytes(), transforms_path.read_bytes()
        # Streams name the whole entropy model: tables, gains and the hyper-synthesis that indexes them.
        self.hash = hashlib.sha256(raw + transforms_raw).digest()[:8]
        spec = json.loads(raw)
        self.hyper = EntropyTables.from_spec(spec["hyper_tables"], self.hash)
        self.gaussian = EntropyTables.from_spec(spec["gaussian_tables"], self.hash)
        scales = np.asarray(spec["scales"], dtype=np.float64)
        if len(scales) != self.gaussian.channels or (np.diff(scales) <= 0).any():
            raise ValueError("scales must be increasing, one per Gaussian table")
        self.scale_bounds = scales[:-1]
        self.scale_log_step = float(spec["scale_log_step"])
        if not self.scale_log_step > 0:
            raise ValueError("scale_log_step must be positive")
        self.log_gains = np.asarray(spec["log_gains"], dtype=np.float64)
        self.log_inverse_gains = np.asarray(spec["log_inverse_gains"], dtype=np.float64)
        if self.log_gains.ndim != 2 or self.log_gains.shape != self.log_inverse_gains.shape or len(self.log_gains) < 2:
            raise ValueError("log_gains and log_inverse_gains must be (levels >= 2, channels) each")
        self.transforms = HyperTransforms.load(transforms_path)
        self.channels = self.log_gains.shape[1]
        self._check_shapes()

    def _check_shapes(self) -> None:
        """Refuse, when the version loads, files whose parts do not fit together (not on every request)."""
        z = self.transforms.analyse(np.zeros((self.channels, 4, 4)))
        if z.shape != (self.hyper.channels, *hyper_latent_size(4, 4)):
            raise ValueError(
                f"h_a gives {z.shape[0]} channels at {z.shape[1:]}, the hyper tables code {self.hyper.channels}"
            )
        means, scales = self.transforms.synthesise(np.zeros(z.shape, dtype=np.int64), 4, 4)
        if means.shape != (self.channels, 4, 4) or scales.shape != means.shape:
            raise ValueError(
                f"h_s gives means {means.shape} and scales {scales.shape} for a latent of {self.channels} channels"
            )

    @property
    def precision(self) -> int:
        """Bits of the latent tables' integer counts."""
        return self.gaussian.precision

    @staticmethod
    def _between_levels(table: np.ndarray, quality_u16: int) -> np.ndarray:
        """A (levels, channels) table at a stream's quality: linear between the two nearest levels.

        IEEE-754 +, * and / only, so the same on every machine (table_shift relies on it).
        """
        levels = len(table)
        position = quality_u16 / QUALITY_STEPS * (levels - 1)
        low = min(int(position), levels - 2)
        weight = position - low
        return table[low] * (1 - weight) + table[low + 1] * weight

    def gains(self, quality_u16: int) -> tuple[np.ndarray, np.ndarray]:
        """(gain, inverse gain) per channel of a stream's quality (float64, as training interpolates them)."""
        return (
            np.exp(self._between_levels(self.log_gains, quality_u16)),
            np.exp(self._between_levels(self.log_inverse_gains, quality_u16)),
        )

    def table_shift(self, quality_u16: int) -> np.ndarray:
        """Per channel, the gain of a quality in Gaussian-table steps (int64), identical on every machine.

        From the interpolated log gain with IEEE-754 +, *, / and rint only (no libm exp or log, whose last
        bits may differ between machines): the table indices must not.
        """
        log_gain = self._between_levels(self.log_gains, quality_u16)
        return np.rint(log_gain / self.scale_log_step).astype(np.int64)

    def _tables_and_means(
        self, z_hat: np.ndarray, rows: int, columns: int, quality_u16: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """(table index, mean of y') of every latent element, from the hyper-latent: identical on both sides."""
        means, scales = self.transforms.synthesise(z_hat, rows, columns)
        tables = np.searchsorted(self.scale_bounds, scales, side="left") + self.table_shift(quality_u16)[:, None, None]
        gain, _ = self.gains(quality_u16)
        return np.clip(tables, 0, len(self.scale_bounds)), means * gain[:, None, None]

    def encode(self, latent: np.ndarray, quality_u16: int | None) -> bytes:
        """Code a (M, h, w) latent (g_a's output, before the gain) at a stream quality; see the module doc."""
        if quality_u16 is None:
            raise ValueError("a variable-rate codec codes at a quality")
        gain, _ = self.gains(quality_u16)
        gained = latent.astype(np.float64) * gain[:, None, None]
        if not np.isfinite(gained).all():
            raise ValueError("latent holds values that are not finite")
        z_hat = np.clip(np.rint(self.transforms.analyse(gained)), -CLAMP, CLAMP).astype(np.int64)
        rows, columns = latent.shape[1:]
        tables, means = self._tables_and_means(z_hat, rows, columns, quality_u16)
        residuals = np.rint(gained - means)
        if np.abs(residuals).max(initial=0) >= 2**31:
            raise ValueError("latent holds values outside the int32 range a stream codes")
        residuals = residuals.astype(np.int64)
        encoder = constriction.stream.queue.RangeEncoder()
        for channel, row in enumerate(z_hat.reshape(len(z_hat), -1)):
            self.hyper.encode_values(encoder, channel, row)
        for table in np.unique(tables):
            self.gaussian.encode_values(encoder, int(table), residuals[tables == table])
        return encoder.get_compressed().astype("<u4").tobytes()

    def decode(self, payload: bytes, rows: int, columns: int, escaped: bool, quality_u16: int | None) -> np.ndarray:
        """The (M, rows, columns) float32 latent g_s takes (inverse gain applied) of one payload."""
        if quality_u16 is None:
            raise DecodingError("stream carries no quality, which a variable-rate codec's streams need")
        if not escaped:
            raise DecodingError("a variable-rate codec's streams are escape-coded")
        if len(payload) % 4:
            raise DecodingError("bitstream payload is not a whole number of 32-bit words")
        decoder = constriction.stream.queue.RangeDecoder(np.frombuffer(payload, dtype="<u4").astype(np.uint32))
        z_rows, z_columns = hyper_latent_size(rows, columns)
        with _undecodable_as_400():
            z_hat = np.stack(
                [self.hyper.decode_values(decoder, c, z_rows * z_columns) for c in range(self.hyper.channels)]
            ).reshape(self.hyper.channels, z_rows, z_columns)
        tables, means = self._tables_and_means(z_hat, rows, columns, quality_u16)  # the model's: faults stay 500
        residuals = np.empty(tables.shape, dtype=np.int64)
        with _undecodable_as_400():
            for table in np.unique(tables):
                where = tables == table
                residuals[where] = self.gaussian.decode_values(decoder, int(table), int(where.sum()))
        _, inverse_gain = self.gains(quality_u16)
        return ((residuals + means) * inverse_gain[:, None, None]).astype(np.float32)
