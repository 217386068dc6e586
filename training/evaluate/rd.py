"""Rate-distortion arithmetic: Bjontegaard delta rate and PSNR at a given rate."""

from __future__ import annotations

import numpy as np


def bd_rate(
    rate_anchor: list[float], psnr_anchor: list[float], rate_test: list[float], psnr_test: list[float]
) -> float:
    """Average rate difference (%) of `test` against `anchor` at equal PSNR (Bjontegaard, VCEG-M33).

    Both curves are fitted as cubic polynomials of log-rate in PSNR and integrated over the PSNR range
    they share; negative means the test codec needs fewer bits for the same quality.
    """
    log_anchor, log_test = np.log(rate_anchor), np.log(rate_test)
    fit_anchor = np.polyfit(psnr_anchor, log_anchor, 3)
    fit_test = np.polyfit(psnr_test, log_test, 3)
    low = max(min(psnr_anchor), min(psnr_test))
    high = min(max(psnr_anchor), max(psnr_test))
    if high <= low:
        return float("nan")  # the curves share no quality range
    integral_anchor = np.polyval(np.polyint(fit_anchor), high) - np.polyval(np.polyint(fit_anchor), low)
    integral_test = np.polyval(np.polyint(fit_test), high) - np.polyval(np.polyint(fit_test), low)
    return float((np.exp((integral_test - integral_anchor) / (high - low)) - 1) * 100)


def psnr_at_rate(rates: list[float], psnrs: list[float], target: float) -> float:
    """PSNR at `target` bpp, interpolated linearly in log-rate (NaN outside the measured range)."""
    order = np.argsort(rates)
    log_rates, values = np.log(np.asarray(rates)[order]), np.asarray(psnrs)[order]
    if not log_rates[0] <= np.log(target) <= log_rates[-1]:
        return float("nan")
    return float(np.interp(np.log(target), log_rates, values))
