"""The window evidence from `$window-evidence`: per offset bin after the dose, the mean
within-session SUDS reduction and the PCL-5 change, each with its 95 % interval."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from services.outcomes.charts.drawing import (
    BLUE,
    GREEN,
    GREY,
    VERMILLION,
    chart_style,
    image_bytes,
    message,
    named,
    new_figure,
    number,
    parts,
    plain,
)

TITLE = "Which timing works: EMDR sessions by hours after the dose"


@dataclass
class Bin:
    label: str
    sessions: int
    suds: tuple[float | None, float | None, float | None, int]
    pcl5: tuple[float | None, float | None, float | None, int]


def render_window(evidence: dict[str, Any], fmt: str) -> bytes:
    """The `$window-evidence` Parameters as a PNG or SVG chart."""
    bins = [_bin(parts(p)) for p in named(evidence, "bin")]
    comparison = next((parts(p) for p in named(evidence, "comparison")), {})
    with chart_style():
        if any(b.sessions for b in bins):
            figure = _draw(bins, comparison)
        else:
            figure = new_figure(10.5, 3.2)
            figure.suptitle(TITLE, x=0.01, ha="left", fontsize=13, fontweight="bold")
            message(figure, "No EMDR session opened by a dose yet")
        return image_bytes(figure, fmt)


def _bin(summary: dict[str, Any]) -> Bin:
    def measured(name: str) -> tuple[float | None, float | None, float | None, int]:
        return (
            number(summary.get(name)),
            number(summary.get(f"{name}Low")),
            number(summary.get(f"{name}High")),
            int(
                number(summary.get(name.removesuffix("Reduction").removesuffix("Change") + "N"))
                or 0
            ),
        )

    return Bin(
        label=str(summary.get("label") or "?"),
        sessions=int(number(summary.get("sessions")) or 0),
        suds=measured("sudsReduction"),
        pcl5=measured("pcl5Change"),
    )


def _draw(bins: list[Bin], comparison: dict[str, Any]) -> Figure:
    figure = new_figure(10.5, 5.6)
    figure.suptitle(TITLE, x=0.01, ha="left", fontsize=13, fontweight="bold")
    suds, pcl5 = figure.subplots(1, 2)
    best = comparison.get("best") if isinstance(comparison.get("best"), str) else None
    _panel(
        suds, bins, best, "suds", "Within-session SUDS reduction", "SUDS points (start \u2212 end)"
    )
    _panel(pcl5, bins, best, "pcl5", "PCL-5 change, dose to after the session", "PCL-5 points")
    pcl5.text(
        0.99,
        0.02,
        "below 0: symptoms fell",
        transform=pcl5.transAxes,
        ha="right",
        fontsize=7.5,
        color=GREY,
    )
    suds.text(
        0.99,
        0.98,
        "above 0: distress fell",
        transform=suds.transAxes,
        ha="right",
        va="top",
        fontsize=7.5,
        color=GREY,
    )
    figure.supxlabel(_caption(comparison), x=0.01, ha="left", fontsize=9, color="#333333")
    return figure


def _panel(ax: Axes, bins: list[Bin], best: str | None, which: str, title: str, unit: str) -> None:
    ax.set_title(f"{title}\n(mean, 95 % interval)", fontsize=9.5)
    ax.axhline(0, color="#888888", lw=0.9)
    ax.set_ylabel(unit)
    ax.grid(axis="y", color="#dddddd", lw=0.6)
    ax.set_axisbelow(True)
    positions = range(len(bins))
    ax.set_xticks(list(positions), [f"{b.label}\n{b.sessions} sessions" for b in bins])
    ax.set_xlabel("hours from the dose to the session")
    ax.set_xlim(-0.6, len(bins) - 0.4)
    colour = GREEN if which == "suds" else BLUE
    for x, item in zip(positions, bins, strict=True):
        mean, low, high, n = item.suds if which == "suds" else item.pcl5
        if mean is None:
            ax.text(x, 0, "no data", ha="center", va="bottom", fontsize=8, color=GREY)
            continue
        hue = VERMILLION if item.label == best else colour
        if low is not None and high is not None:
            ax.errorbar(
                [x],
                [mean],
                yerr=[[mean - low], [high - mean]],
                fmt="o",
                color=hue,
                ms=7,
                capsize=5,
                lw=1.8,
            )
        else:
            ax.plot([x], [mean], marker="o", ms=7, color=hue, lw=0)
        ax.annotate(
            f"{plain(mean)}\nn = {n}" + ("\nbest" if item.label == best else ""),
            (x, mean),
            xytext=(9, 0),
            textcoords="offset points",
            va="center",
            fontsize=7.5,
            color=hue,
        )


def _caption(comparison: dict[str, Any]) -> str:
    """The comparison's conclusion in plain words, with its method and what it still needs."""
    lines = []
    conclusion = comparison.get("conclusion")
    if isinstance(conclusion, str) and conclusion:
        lines.append(conclusion)
    more = number(comparison.get("moreSessionsNeeded"))
    if more is not None:
        lines.append(f"About {int(more)} more sessions would be needed to tell.")
    method = comparison.get("method")
    if isinstance(method, str) and method:
        lines.append(f"Method: {method}")
    text = " ".join(lines) or "No comparison between bins yet."
    return (
        "\n".join(textwrap.wrap(text, 150))
        + "\nEvidence for the protocol's authors: it never changes a protocol by itself."
    )
