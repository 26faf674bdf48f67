"""The programme from `$programme-report`: response and remission rates with their Wilson
intervals, and the paired effect size (Hedges' g) with its interval, per instrument."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from services.outcomes.charts.drawing import (
    BLUE,
    GREY,
    ORANGE,
    VERMILLION,
    chart_style,
    image_bytes,
    message,
    named,
    new_figure,
    number,
    parts,
    plain,
    value,
)

TITLE = "Programme outcomes"


@dataclass
class Row:
    """One instrument's line of the report."""

    name: str
    n: int
    response: tuple[float, float | None, float | None] | None
    remission: float | None
    g: tuple[float, float | None, float | None] | None
    change: str
    note: str


def render_programme(report: dict[str, Any], fmt: str) -> bytes:
    """The `$programme-report` Parameters as a PNG or SVG chart."""
    rows = [_row(parts(p)) for p in named(report, "measure")]
    rows = [row for row in rows if row.n > 0]
    footer = _footer(report)
    with chart_style():
        if rows:
            figure = _draw(rows, footer)
        else:
            figure = new_figure(10.5, 3.2)
            figure.suptitle(TITLE, x=0.01, ha="left", fontsize=13, fontweight="bold")
            message(figure, "No patient has a baseline and a later score yet")
        return image_bytes(figure, fmt)


def _row(summary: dict[str, Any]) -> Row:
    coding = summary.get("instrument") or {}
    name = (
        str(coding.get("display") or coding.get("code") or "?") if isinstance(coding, dict) else "?"
    )
    name = name.removesuffix(" total score").removesuffix(" rating")
    rate = number(summary.get("responseRate"))
    g = number(summary.get("hedgesG"))
    baseline, latest = number(summary.get("baselineMean")), number(summary.get("latestMean"))
    change = (
        f"{plain(baseline)} \u2192 {plain(latest)}"
        if baseline is not None and latest is not None
        else ""
    )
    return Row(
        name=name,
        n=int(number(summary.get("n")) or 0),
        response=(
            (rate, number(summary.get("responseRateLow")), number(summary.get("responseRateHigh")))
            if rate is not None
            else None
        ),
        remission=number(summary.get("remissionRate")),
        g=(
            (g, number(summary.get("hedgesGLow")), number(summary.get("hedgesGHigh")))
            if g is not None
            else None
        ),
        change=change,
        note=str(summary.get("note") or ""),
    )


def _footer(report: dict[str, Any]) -> str:
    words = []
    for parameter in named(report, "windowAdherence"):
        share = number(value(parameter))
        if share is not None:
            words.append(f"{plain(100 * share, 0)} % of EMDR sessions inside the optimal window")
    for parameter in named(report, "sessions"):
        count = number(value(parameter))
        if count is not None:
            words.append(f"{int(count)} EMDR sessions counted")
    return "   \u00b7   ".join(words)


def _draw(rows: list[Row], footer: str) -> Figure:
    figure = new_figure(10.5, 1.9 + 0.62 * len(rows))
    figure.suptitle(TITLE, x=0.01, ha="left", fontsize=13, fontweight="bold")
    rates, effects = figure.subplots(1, 2, sharey=True, width_ratios=[1.15, 1])
    labels = [
        f"{row.name}\nn = {row.n}" + (f", mean {row.change}" if row.change else "") for row in rows
    ]
    positions = list(range(len(rows)))[::-1]
    _draw_rates(rates, rows, positions)
    _draw_effects(effects, rows, positions)
    rates.set_yticks(positions, labels)
    rates.set_ylim(-0.7, len(rows) - 0.3)
    if footer:
        figure.supxlabel(footer, x=0.01, ha="left", fontsize=8.5, color=GREY)
    return figure


def _draw_rates(ax: Axes, rows: list[Row], positions: list[int]) -> None:
    ax.set_title("Response and remission (95 % Wilson interval)")
    ax.set_xlim(0, 100)
    ax.set_xlabel("patients (%)")
    ax.grid(axis="x", color="#dddddd", lw=0.6)
    ax.set_axisbelow(True)
    for row, y in zip(rows, positions, strict=True):
        if row.response is not None:
            rate, low, high = row.response
            _interval(ax, y + 0.14, 100 * rate, low, high, BLUE, "o", scale=100)
            # Above the point, leaning inwards near either end so the words stay on the axes.
            ax.annotate(
                f"response {plain(100 * rate, 0)} %" + _bracket(low, high, 100, " %"),
                (100 * rate, y + 0.14),
                xytext=(0, 6),
                textcoords="offset points",
                va="bottom",
                ha="left" if rate < 0.3 else "right" if rate > 0.7 else "center",
                fontsize=8,
                color=BLUE,
            )
        if row.remission is not None:
            ax.plot([100 * row.remission], [y - 0.16], marker="D", ms=6, color=ORANGE, lw=0)
            ax.annotate(
                f"remission {plain(100 * row.remission, 0)} %",
                (100 * row.remission, y - 0.16),
                xytext=(7, 0),
                textcoords="offset points",
                va="center",
                fontsize=8,
                color="#9a6a00",
            )
        if row.response is None and row.remission is None:
            ax.text(1, y, "no response or remission rule", va="center", fontsize=8, color=GREY)


def _draw_effects(ax: Axes, rows: list[Row], positions: list[int]) -> None:
    ax.set_title("Effect size: Hedges' g, paired (95 % interval)")
    ax.axvline(0, color="#888888", lw=0.9)
    ax.set_xlabel("\u2190 scores fell        g        scores rose \u2192")
    ax.grid(axis="x", color="#dddddd", lw=0.6)
    ax.set_axisbelow(True)
    ax.tick_params(left=False)
    shown = [abs(v) for row in rows if row.g for v in row.g if v is not None]
    reach = max([1.0, *shown]) * 1.25
    ax.set_xlim(-reach, reach)
    for row, y in zip(rows, positions, strict=True):
        if row.g is None:
            ax.text(
                0.02,
                y,
                row.note or "g not reported",
                transform=ax.get_yaxis_transform(),
                va="center",
                fontsize=8,
                color=GREY,
                wrap=True,
            )
            continue
        g, low, high = row.g
        _interval(ax, y, g, low, high, VERMILLION, "s")
        anchor = low if low is not None else g
        ax.annotate(
            f"g = {plain(g, 2)}" + _bracket(low, high, 1, "", digits=2),
            (anchor, y),
            xytext=(0, 9),
            textcoords="offset points",
            ha="left",
            fontsize=8,
            color=VERMILLION,
            bbox={"fc": "white", "ec": "none", "alpha": 0.85, "pad": 1},
        )


def _interval(
    ax: Axes,
    y: float,
    point: float,
    low: float | None,
    high: float | None,
    colour: str,
    marker: str,
    scale: float = 1,
) -> None:
    if low is not None and high is not None:
        ax.errorbar(
            [point],
            [y],
            xerr=[[point - scale * low], [scale * high - point]],
            fmt=marker,
            color=colour,
            ms=6,
            capsize=4,
            lw=1.6,
        )
    else:
        ax.plot([point], [y], marker=marker, ms=6, color=colour, lw=0)


def _bracket(
    low: float | None, high: float | None, scale: float, unit: str, digits: int = 0
) -> str:
    if low is None or high is None:
        return ""
    return f" [{plain(scale * low, digits)} to {plain(scale * high, digits)}{unit}]"
