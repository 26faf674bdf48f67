"""What a statistic returns: an estimate with its 95 % interval, or the reason there is none."""

from __future__ import annotations

from dataclasses import dataclass

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Estimate:
    """A point estimate with the two ends of its 95 % interval."""

    value: float
    low: float
    high: float


@dataclass(frozen=True)
class Unavailable:
    """No estimate: `reason` says why, in words a report can show."""

    reason: str
