"""Paired Hedges' g (pre/post in the same patients) from the aggregates of the changes.

d_z = mean(change) / sd(change); g = d_z x J with J = 1 - 3 / (4(n - 1) - 1).
The 95 % interval is the exact one for d_z, found by inverting the noncentral t distribution
of t = d_z sqrt(n) with n - 1 degrees of freedom, both ends multiplied by J as the estimate is.
Where the root finding cannot work (a t beyond what scipy's noncentral t computes), it falls
back to the Hedges & Olkin normal approximation SE = sqrt(1/n + d_z^2 / (2n)) with the t
quantile, also times J.
"""

from __future__ import annotations

import math

from services.outcomes.statistics.estimates import CONFIDENCE, Estimate, Unavailable
from services.outcomes.statistics.lazy import scipy_optimize, scipy_stats


def small_sample_factor(n: int) -> float:
    """Hedges' J for n pairs (0 at n = 2, where g would be meaningless)."""
    return 1.0 - 3.0 / (4.0 * (n - 1) - 1.0)


def paired_hedges_g(n: int, mean_change: float, sd_change: float) -> Estimate | Unavailable:
    """Hedges' g of paired changes with its 95 % interval, or why there is none."""
    if n < 3:
        return Unavailable(f"Hedges' g needs at least 3 patients with both scores (n = {n})")
    if not sd_change > 0 or not math.isfinite(sd_change):
        return Unavailable("Hedges' g needs changes that differ between patients (sd = 0)")
    d_z = mean_change / sd_change
    factor = small_sample_factor(n)
    low, high = _exact_interval(d_z, n) or _approximate_interval(d_z, n)
    return Estimate(d_z * factor, low * factor, high * factor)


def _exact_interval(d_z: float, n: int) -> tuple[float, float] | None:
    """The noncentral-t interval for d_z, or None when it cannot be computed."""
    t, df = d_z * math.sqrt(n), n - 1
    tail = (1.0 - CONFIDENCE) / 2.0
    # P(T <= t | ncp) falls as ncp rises: the lower end leaves `tail` above t, the upper below.
    lower = _noncentrality(t, df, 1.0 - tail)
    upper = _noncentrality(t, df, tail)
    if lower is None or upper is None:
        return None
    return lower / math.sqrt(n), upper / math.sqrt(n)


def _noncentrality(t: float, df: int, probability: float) -> float | None:
    """The ncp at which the noncentral t's cdf at `t` equals `probability`."""

    def gap(ncp: float) -> float:
        return float(scipy_stats().nct.cdf(t, df, ncp)) - probability

    step = 1.0 + abs(t)
    low, high = t - step, t + step
    for _ in range(60):
        g_low, g_high = gap(low), gap(high)
        if not (math.isfinite(g_low) and math.isfinite(g_high)):
            return None
        if g_low >= 0 >= g_high:
            return float(scipy_optimize().brentq(gap, low, high, xtol=1e-10))
        step *= 2.0
        if g_low < 0:
            low -= step
        if g_high > 0:
            high += step
    return None


def _approximate_interval(d_z: float, n: int) -> tuple[float, float]:
    """Hedges & Olkin: d_z +/- t(0.975, n - 1) x sqrt(1/n + d_z^2 / (2n))."""
    se = math.sqrt(1.0 / n + d_z * d_z / (2.0 * n))
    crit = float(scipy_stats().t.ppf(0.5 + CONFIDENCE / 2.0, n - 1))
    return d_z - crit * se, d_z + crit * se
