"""Offset bins of EMDR sessions after their dose, from the setting's edges in hours."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

# OUTCOMES_WINDOW_BINS_H: 0-2 h, 2-24 h, 24-72 h, 72 h-7 d, over 7 d.
DEFAULT_EDGES = "2,24,72,168"
_WEEK = 168.0


@dataclass(frozen=True)
class OffsetBin:
    """Sessions from `from_hours` (inclusive) to `to_hours` (exclusive; None: no end)."""

    label: str
    from_hours: float
    to_hours: float | None


def parse_edges(text: str) -> tuple[float, ...]:
    """The edges between bins: positive hours, rising; ValueError naming what is wrong."""
    try:
        edges = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError(
            f"window bins must be hours separated by commas, e.g. {DEFAULT_EDGES}"
        ) from None
    if not edges:
        raise ValueError("window bins need at least one edge, e.g. 24")
    if any(e <= 0 for e in edges) or any(b <= a for a, b in pairwise(edges)):
        raise ValueError(f"window bin edges must be positive and rising, e.g. {DEFAULT_EDGES}")
    return edges


def _amount(hours: float) -> tuple[str, str]:
    if hours >= _WEEK and hours % 24 == 0:
        return f"{hours / 24:g}", "d"
    return f"{hours:g}", "h"


def _label(low: float, high: float | None) -> str:
    if high is None:
        amount, unit = _amount(low)
        return f"over {amount} {unit}"
    (a, a_unit), (b, b_unit) = _amount(low), _amount(high)
    return f"{a}-{b} {b_unit}" if a_unit == b_unit else f"{a} {a_unit}-{b} {b_unit}"


def offset_bins(edges: tuple[float, ...]) -> tuple[OffsetBin, ...]:
    """The bins the edges make: from 0 to the first edge, ..., over the last."""
    lows = (0.0, *edges)
    highs: tuple[float | None, ...] = (*edges, None)
    return tuple(OffsetBin(_label(lo, hi), lo, hi) for lo, hi in zip(lows, highs, strict=True))


def bin_of(bins: tuple[OffsetBin, ...], hours: float) -> OffsetBin:
    """The bin of a session `hours` after its dose ended; sessions during the dose (a negative
    offset, in-session EMDR) fall in the first."""
    for candidate in bins:
        if candidate.to_hours is None or hours < candidate.to_hours:
            return candidate
    return bins[-1]
