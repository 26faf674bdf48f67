"""What every chart shares: the palette, reading Parameters, and figure to PNG or SVG bytes."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from typing import Any

import matplotlib
from matplotlib.figure import Figure

from shared.fhir.dates import DateFormatError, date_range

FORMATS = ("png", "svg")
# Okabe and Ito's palette: told apart with every common colour-vision deficiency.
BLUE = "#0072B2"
SKY = "#56B4E9"
GREEN = "#009E73"
ORANGE = "#E69F00"
VERMILLION = "#D55E00"
PURPLE = "#CC79A7"
GREY = "#6b6b6b"
INK = "#222222"
DPI = 110

_STYLE = {
    # Text stays text in SVG: searchable, selectable, read by screen readers.
    "svg.fonttype": "none",
    "svg.hashsalt": "kemdr",
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
    "axes.titlelocation": "left",
    "axes.labelsize": 9,
    "axes.edgecolor": "#999999",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "xtick.color": "#444444",
    "ytick.color": "#444444",
    "legend.frameon": False,
    "legend.fontsize": 8.5,
}
# matplotlib's global state (its rc parameters, font cache, text layout) is not thread-safe;
# the API renders in worker threads, one chart at a time.
_LOCK = threading.Lock()


@contextmanager
def chart_style() -> Iterator[None]:
    """Hold the drawing lock with the charts' style in force."""
    with _LOCK, matplotlib.rc_context(_STYLE):
        yield


def new_figure(width: float, height: float) -> Figure:
    """A figure outside pyplot (no global figure manager), laid out by constrained layout."""
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def image_bytes(figure: Figure, fmt: str) -> bytes:
    """The figure as PNG or SVG bytes, without a creation date (the same data, the same bytes)."""
    if fmt not in FORMATS:
        raise ValueError(f"a chart is png or svg, not {fmt}")
    out = io.BytesIO()
    metadata: dict[str, Any] = {"Date": None} if fmt == "svg" else {"Software": None}
    figure.savefig(out, format=fmt, metadata=metadata, facecolor="white")
    return out.getvalue()


def message(figure: Figure, text: str) -> None:
    """Write a sentence where the chart would be (no data to draw)."""
    axes = figure.add_subplot()
    axes.set_axis_off()
    axes.text(0.5, 0.5, text, ha="center", va="center", fontsize=13, color=GREY)


# ---- reading Parameters --------------------------------------------------------------------
def named(parameters: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """The top-level parameters of that name, in order."""
    found = parameters.get("parameter") or []
    return [p for p in found if isinstance(p, dict) and p.get("name") == name]


def value(entry: dict[str, Any]) -> Any:
    """The value[x] of a parameter or part (None without one)."""
    for key, item in entry.items():
        if key.startswith("value"):
            return item
    return None


def parts(parameter: dict[str, Any]) -> dict[str, Any]:
    """A parameter's parts by name (the first of each name), as their values."""
    found: dict[str, Any] = {}
    for part in parameter.get("part") or []:
        if isinstance(part, dict) and isinstance(part.get("name"), str):
            found.setdefault(part["name"], value(part))
    return found


def number(item: Any) -> float | None:
    """A valueDecimal or valueInteger as a float (None when absent or not a number); a
    Decimal too, as operations built in-process and exact JSON parsing give them."""
    if isinstance(item, bool) or not isinstance(item, int | float | str | Decimal):
        return None
    try:
        return float(item)
    except ValueError:
        return None


def moment(item: Any) -> datetime | None:
    """A FHIR dateTime as naive UTC (None when absent or only a year or month)."""
    if not isinstance(item, str) or len(item) < 10:
        return None
    try:
        return date_range(item)[0]
    except DateFormatError:
        return None


def plain(number_: float, digits: int = 1) -> str:
    """A number without a trailing `.0`, with a true minus sign."""
    text = f"{number_:.{digits}f}".rstrip("0").rstrip(".") if digits else f"{number_:.0f}"
    return text.replace("-", "\u2212")
