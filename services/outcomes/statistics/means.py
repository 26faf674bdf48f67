"""Means with 95 % t intervals, from values or from SQL aggregates (n, sum, sum of squares)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from services.outcomes.statistics.estimates import CONFIDENCE, Estimate, Unavailable
from services.outcomes.statistics.lazy import scipy_stats

# Variances this small relative to the mean square are floating-point residue of
# sum-of-squares arithmetic, not spread: all values were equal.
_RELATIVE_ZERO = 1e-12


@dataclass(frozen=True)
class Moments:
    """n, mean and sample standard deviation (None below two values)."""

    n: int
    mean: float | None
    sd: float | None


def moments_from_sums(n: int, total: float, squares: float) -> Moments:
    """Mean and sd from n, the sum and the sum of squares (what SQL aggregates give)."""
    if n <= 0:
        return Moments(0, None, None)
    mean = total / n
    if n < 2:
        return Moments(n, mean, None)
    variance = (squares - total * total / n) / (n - 1)
    if variance <= _RELATIVE_ZERO * max(1.0, squares / n):
        variance = 0.0
    return Moments(n, mean, math.sqrt(variance))


def moments(values: Sequence[float]) -> Moments:
    """Mean and sd of a list of values (two passes: exact for equal values)."""
    n = len(values)
    if n == 0:
        return Moments(0, None, None)
    mean = math.fsum(values) / n
    if n < 2:
        return Moments(n, mean, None)
    variance = math.fsum((v - mean) ** 2 for v in values) / (n - 1)
    return Moments(n, mean, math.sqrt(variance))


def mean_interval(m: Moments) -> Estimate | Unavailable:
    """The mean with its t interval (n - 1 degrees of freedom)."""
    if m.n == 0 or m.mean is None:
        return Unavailable("no values")
    if m.sd is None:
        return Unavailable("an interval needs at least 2 values")
    crit = float(scipy_stats().t.ppf(0.5 + CONFIDENCE / 2.0, m.n - 1))
    half = crit * m.sd / math.sqrt(m.n)
    return Estimate(m.mean, m.mean - half, m.mean + half)
