"""Escape coding: latents outside a table's support come back exactly, never clipped."""

from __future__ import annotations

import json

import numpy as np
import pytest

from service.codecs.entropy import EntropyTables
from service.errors import DecodingError
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def tables() -> EntropyTables:
    folder = ROOT / "models" / "image-codec-q3" / "3"
    return EntropyTables(folder / json.loads((folder / "model.json").read_text())["entropy_model"]["file"])


def test_latents_far_outside_every_support_round_trip_bit_exact(tables: EntropyTables) -> None:
    rng = np.random.default_rng(0)
    latent = rng.normal(0, 2, (tables.channels, 6, 9)).astype(np.float32)
    far = np.array([1e3, -1e3, 65535, -65537, 2**24, -(2**24), 2**31 - 128, -(2**31 - 128)], np.float32)
    latent[:, 0, : len(far)] = far  # every channel, far beyond its table on both sides
    latent[:, 1, 0] = tables.offsets - 1  # just outside each support
    latent[:, 1, 1] = tables.offsets + tables.sizes  # just past its end
    decoded = tables.decode(tables.encode(latent), 6, 9)
    assert np.array_equal(decoded, np.rint(latent))


def test_escapes_around_every_power_of_two_round_trip(tables: EntropyTables) -> None:
    # Bit lengths change at powers of two: every value next to one, on both sides of zero.
    values = sorted({sign * (2**k + d) for k in range(1, 24) for d in (-1, 0, 1) for sign in (1, -1)})
    latent = np.zeros((tables.channels, 1, len(values)), np.float32)
    latent[:] = np.asarray(values, np.float32)
    assert np.array_equal(tables.decode(tables.encode(latent), 1, len(values)), latent)


def test_in_range_latents_cost_no_more_than_a_few_bits_for_the_escape(tables: EntropyTables) -> None:
    latent = np.zeros((tables.channels, 16, 16), np.float32)
    plain = len(tables.encode(latent))
    latent[:, 3, 3] = 10_000  # one escape per channel
    escaped = tables.encode(latent)
    assert np.array_equal(tables.decode(escaped, 16, 16), latent)
    assert len(escaped) - plain < tables.channels * 8  # ~37 bits each: its 14 bits, length, escape symbol


def test_a_latent_beyond_int32_is_refused_when_encoding(tables: EntropyTables) -> None:
    latent = np.zeros((tables.channels, 2, 2), np.float32)
    latent[0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="int32"):
        tables.encode(latent)


def test_a_payload_escaping_every_symbol_decodes_exactly_and_cut_short_is_refused(tables: EntropyTables) -> None:
    # What a hostile stream could declare: no per-escape Python work, so its cost is that of its size.
    latent = np.full((tables.channels, 64, 64), 2**30, np.float32)
    payload = tables.encode(latent)
    assert np.array_equal(tables.decode(payload, 64, 64), latent)
    with pytest.raises(DecodingError):
        tables.decode(payload[: len(payload) // 2], 64, 64)
