"""Seeded synthetic univariate series: the pretraining corpus of `series-embed`, generated in code.

Each family is a function `(rng, length) -> (length,) float64`; `generate_series` picks a family
(sometimes sums two), and warps the time axis of some. Anyone can regenerate the corpus offline
from its seed. The families:

1. `kernel_synth`: a Gaussian process whose kernel is a random composition (sums and products) of
   RBF, periodic, linear, rational-quadratic, white-noise and constant kernels (Chronos' KernelSynth);
2. `arma`: a stationary ARMA(p, q) process, p, q <= 3 (AR roots drawn inside the unit circle);
3. `random_walk`: Gaussian or heavy-tailed steps, with or without drift;
4. `sinusoids`: one to four sinusoids with a polynomial trend and noise;
5. `piecewise`: piecewise-constant or piecewise-linear levels;
6. `spikes`: sparse spikes of both signs on a noisy baseline;
7. `shapelets`: bumps, pulses, triangles, saw teeth, bursts and chirps at random positions on a
   quiet background.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Generator = Callable[[np.random.Generator, int], np.ndarray]


# ---------------------------------------------------------------- KernelSynth


def _kernel(rng: np.random.Generator, x: np.ndarray, length: int) -> np.ndarray:
    """One random base kernel's Gram matrix over x in [0, 1]."""
    d = x[:, None] - x[None, :]
    kind = rng.integers(6)
    if kind == 0:  # RBF
        scale = rng.choice([0.02, 0.05, 0.1, 0.2, 0.5, 1.0])
        return np.exp(-0.5 * (d / scale) ** 2)
    if kind == 1:  # periodic, periods in steps as real series have them (hours, days, weeks, ...)
        period = rng.choice([4, 6, 7, 12, 24, 30, 52, max(8, length // 4), max(8, length // 2)]) / length
        scale = rng.choice([0.5, 1.0, 2.0])
        return np.exp(-2.0 * np.sin(np.pi * np.abs(d) / period) ** 2 / scale**2)
    if kind == 2:  # linear
        offset = rng.uniform(0.0, 1.0)
        return (x[:, None] - offset) * (x[None, :] - offset)
    if kind == 3:  # rational quadratic
        alpha, scale = rng.choice([0.1, 1.0, 10.0]), rng.choice([0.05, 0.1, 0.3, 1.0])
        return (1.0 + d**2 / (2 * alpha * scale**2)) ** -alpha
    if kind == 4:  # white noise
        return np.eye(len(x)) * rng.choice([0.01, 0.1, 1.0])
    return np.full_like(d, rng.uniform(0.1, 1.0))  # constant


def kernel_synth(rng: np.random.Generator, length: int) -> np.ndarray:
    """A Gaussian-process sample under a random composition of up to five base kernels."""
    x = np.linspace(0.0, 1.0, length)
    gram = _kernel(rng, x, length)
    for _ in range(rng.integers(0, 5)):
        other = _kernel(rng, x, length)
        gram = gram + other if rng.random() < 0.5 else gram * other
    gram = gram + 1e-5 * np.eye(length)
    try:
        factor = np.linalg.cholesky(gram)
    except np.linalg.LinAlgError:  # rare numerically indefinite products
        values, vectors = np.linalg.eigh(gram)
        factor = vectors * np.sqrt(np.clip(values, 0.0, None))
    return np.asarray(factor @ rng.standard_normal(length))


# ---------------------------------------------------------------- classical processes


def arma(rng: np.random.Generator, length: int) -> np.ndarray:
    """A stationary ARMA(p, q) process (AR roots inside the unit circle), after a burn-in."""
    roots = rng.uniform(0.1, 0.97, rng.integers(1, 4)) * rng.choice([-1.0, 1.0], size=1)
    ar = -np.poly(roots)[1:]
    ma = rng.uniform(-0.8, 0.8, rng.integers(0, 4))
    burn = 100
    noise = rng.standard_normal(length + burn)
    out = np.zeros(length + burn)
    for t in range(length + burn):
        past = out[max(0, t - len(ar)) : t][::-1]
        shocks = noise[max(0, t - len(ma)) : t][::-1]
        out[t] = noise[t] + ar[: len(past)] @ past + ma[: len(shocks)] @ shocks
    return out[burn:]


def random_walk(rng: np.random.Generator, length: int) -> np.ndarray:
    """Cumulative Gaussian or Student-t steps, with a random drift half of the time."""
    steps = rng.standard_t(3, length) if rng.random() < 0.3 else rng.standard_normal(length)
    drift = rng.normal(0.0, 0.3) if rng.random() < 0.5 else 0.0
    return np.cumsum(steps + drift)


def sinusoids(rng: np.random.Generator, length: int) -> np.ndarray:
    """One to four sinusoids, a polynomial trend of degree <= 2 and Gaussian noise."""
    t = np.arange(length) / length
    out = np.zeros(length)
    for _ in range(rng.integers(1, 5)):
        cycles = rng.uniform(0.5, max(1.0, length / 4))
        out += rng.uniform(0.2, 1.0) * np.sin(2 * np.pi * cycles * t + rng.uniform(0, 2 * np.pi))
    trend = np.polyval(rng.normal(0.0, 1.0, rng.integers(1, 4)), t - 0.5)
    return out + trend + rng.uniform(0.0, 0.3) * rng.standard_normal(length)


def piecewise(rng: np.random.Generator, length: int) -> np.ndarray:
    """Piecewise-constant (steps) or piecewise-linear (knots) levels plus a little noise."""
    pieces = int(rng.integers(2, 8))
    knots = np.sort(rng.choice(np.arange(1, length), size=min(pieces - 1, length - 1), replace=False))
    levels = rng.normal(0.0, 1.0, len(knots) + 1)
    if rng.random() < 0.5:
        out = levels[np.searchsorted(knots, np.arange(length), side="right")]
    else:
        where = np.concatenate([[0], knots, [length - 1]])
        out = np.interp(np.arange(length), where, rng.normal(0.0, 1.0, len(where)))
    return out + rng.uniform(0.0, 0.1) * rng.standard_normal(length)


def spikes(rng: np.random.Generator, length: int) -> np.ndarray:
    """Sparse spikes (one to three steps wide, either sign) on a noisy, slowly wandering baseline."""
    out = 0.2 * rng.standard_normal(length) + 0.05 * np.cumsum(rng.standard_normal(length))
    for start in rng.choice(length, size=int(rng.integers(1, max(2, length // 20 + 2))), replace=False):
        width = int(rng.integers(1, 4))
        out[start : start + width] += rng.choice([-1.0, 1.0]) * rng.uniform(2.0, 6.0)
    return out


def _shapelet(rng: np.random.Generator, width: int) -> np.ndarray:
    u = np.linspace(-1.0, 1.0, width)
    kind = rng.integers(6)
    if kind == 0:
        return np.exp(-4.0 * u**2)  # bump
    if kind == 1:
        return np.where(np.abs(u) < 0.6, 1.0, 0.0)  # pulse
    if kind == 2:
        return 1.0 - np.abs(u)  # triangle
    if kind == 3:
        return (u + 1.0) / 2.0 * (u < 0.9)  # saw tooth
    if kind == 4:
        return np.sin(2 * np.pi * rng.uniform(1.5, 4.0) * u) * np.exp(-2.0 * u**2)  # burst
    return np.sin(2 * np.pi * (1.0 + 3.0 * (u + 1.0)) * u)  # chirp


def shapelets(rng: np.random.Generator, length: int) -> np.ndarray:
    """One to three shapelets of random kind, width, sign and height at random positions."""
    out = 0.1 * rng.standard_normal(length) + 0.02 * np.cumsum(rng.standard_normal(length))
    for _ in range(rng.integers(1, 4)):
        width = int(rng.integers(max(3, length // 12), max(4, length // 2) + 1))
        width = min(width, length)
        start = int(rng.integers(0, length - width + 1))
        out[start : start + width] += rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 3.0) * _shapelet(rng, width)
    return out


FAMILIES: dict[str, Generator] = {
    "kernel_synth": kernel_synth,
    "arma": arma,
    "random_walk": random_walk,
    "sinusoids": sinusoids,
    "piecewise": piecewise,
    "spikes": spikes,
    "shapelets": shapelets,
}


# ---------------------------------------------------------------- time warping and the mix


def time_warp(rng: np.random.Generator, series: np.ndarray, strength: float) -> np.ndarray:
    """Resample along a random smooth monotone warp of the time axis (strength 0 is the identity)."""
    n = len(series)
    if n < 4 or strength <= 0:
        return series
    knots = max(2, int(rng.integers(2, 6)))
    speeds = np.exp(rng.normal(0.0, strength, knots))
    speed = np.interp(np.linspace(0, knots - 1, n), np.arange(knots), speeds)
    warped = np.concatenate([[0.0], np.cumsum(speed[:-1])])
    warped *= (n - 1) / warped[-1]
    return np.interp(warped, np.arange(n), series)


def generate_series(rng: np.random.Generator, length: int, warp_probability: float = 0.3) -> np.ndarray:
    """One corpus series: a family's sample (a fifth of the time, the sum of two), sometimes time-warped."""
    names = list(FAMILIES)
    series = FAMILIES[names[rng.integers(len(names))]](rng, length)
    if rng.random() < 0.2:
        other = FAMILIES[names[rng.integers(len(names))]](rng, length)
        series = series / (series.std() + 1e-8) + rng.uniform(0.2, 1.0) * other / (other.std() + 1e-8)
    if rng.random() < warp_probability:
        series = time_warp(rng, series, strength=0.4)
    return np.asarray(series, dtype=np.float64)


def generate_corpus(count: int, min_length: int, max_length: int, seed: int) -> list[np.ndarray]:
    """`count` series with log-uniform lengths in [min_length, max_length]; item i depends on (seed, i) only."""
    corpus = []
    for index in range(count):
        rng = np.random.default_rng((seed, index))
        length = round(np.exp(rng.uniform(np.log(min_length), np.log(max_length))))
        corpus.append(generate_series(rng, length))
    return corpus
