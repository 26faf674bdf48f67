"""Rates (response, remission, adherence) with the Wilson 95 % interval."""

from __future__ import annotations

import math

from services.outcomes.statistics.estimates import CONFIDENCE, Estimate, Unavailable
from services.outcomes.statistics.lazy import scipy_stats


def wilson_interval(successes: int, n: int) -> Estimate | Unavailable:
    """The proportion successes / n with its Wilson score interval."""
    if n <= 0:
        return Unavailable("no patients to count")
    if not 0 <= successes <= n:
        raise ValueError("successes must lie between 0 and n")
    z = float(scipy_stats().norm.ppf(0.5 + CONFIDENCE / 2.0))
    p = successes / n
    z2n = z * z / n
    centre = (p + z2n / 2.0) / (1.0 + z2n)
    half = z / (1.0 + z2n) * math.sqrt(p * (1.0 - p) / n + z2n / (4.0 * n))
    # At 0 and n the interval touches the bound exactly; rounding must not move it.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return Estimate(p, low, high)
