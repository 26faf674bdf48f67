"""A patient's trajectory from `$outcomes`: scores over time in their severity bands, with the
doses, their plasticity windows and the EMDR sessions marked."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import matplotlib.dates as mdates
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from services.outcomes.charts.drawing import (
    BLUE,
    GREEN,
    GREY,
    INK,
    PURPLE,
    SKY,
    chart_style,
    image_bytes,
    message,
    new_figure,
    plain,
)
from services.outcomes.charts.trajectory_data import (
    Dose,
    Series,
    Session,
    read_trajectory,
    summary_text,
)
from services.outcomes.observations.measures import Measure, MeasureTable

# Severity bands from light to deep (one warm hue: readable under the blue score line).
BAND_COLOURS = ("#fcfcfa", "#faf5e9", "#f6ecd6", "#f1e0be", "#ebd2a6", "#e4c28e")
WINDOW_COLOUR, OPTIMAL_COLOUR = SKY, BLUE
# SUDS and VOC are taken at the start and end of each session: a line joins only those two.
IN_SESSION = frozenset({"suds", "voc"})
SESSION_SPAN = timedelta(hours=6)


def render_trajectory(outcomes: dict[str, Any], fmt: str, *, measures: MeasureTable) -> bytes:
    """The `$outcomes` Parameters as a PNG or SVG trajectory chart."""
    data = read_trajectory(outcomes, measures)
    patient, series, doses, sessions = data.patient, data.series, data.doses, data.sessions
    with chart_style():
        if series or doses or sessions:
            figure = _draw(patient, series, doses, sessions)
        else:
            figure = new_figure(10.5, 3.2)
            figure.suptitle(
                f"{patient}: outcomes over time", x=0.01, ha="left", fontsize=13, fontweight="bold"
            )
            message(figure, "No scores yet, and no doses or EMDR sessions")
        return image_bytes(figure, fmt)


# ---- drawing ---------------------------------------------------------------------------------
def _draw(patient: str, series: list[Series], doses: list[Dose], sessions: list[Session]) -> Figure:
    panels = max(len(series), 1)
    figure = new_figure(10.5, 1.5 + 0.75 + 2.05 * panels)
    figure.suptitle(
        f"{patient}: outcomes over time", x=0.01, ha="left", fontsize=13, fontweight="bold"
    )
    grid = figure.add_gridspec(1 + panels, 1, height_ratios=[0.75] + [2.05] * panels)
    strip = figure.add_subplot(grid[0])
    axes = [figure.add_subplot(grid[i + 1], sharex=strip) for i in range(panels)]
    span = _time_span(series, doses, sessions)
    strip.set_xlim(*span)
    _draw_strip(strip, doses, sessions, figure)
    if not series:
        axes[0].set_yticks([])
        _shade_doses(axes[0], doses)
        axes[0].text(
            0.5,
            0.5,
            "No scores yet",
            transform=axes[0].transAxes,
            ha="center",
            va="center",
            fontsize=14,
            color=GREY,
        )
    for item, ax in zip(series, axes, strict=False):
        _draw_series(ax, item, doses)
    for ax in axes[:-1]:
        ax.tick_params(labelbottom=False)
    locator = mdates.AutoDateLocator(minticks=4, maxticks=10)
    axes[-1].xaxis.set_major_locator(locator)
    axes[-1].xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    axes[-1].set_xlabel("date (UTC)")
    figure.legend(
        handles=_legend(), loc="outside lower center", ncol=6, handlelength=1.6, columnspacing=1.2
    )
    return figure


def _time_span(
    series: list[Series], doses: list[Dose], sessions: list[Session]
) -> tuple[datetime, datetime]:
    times = [t for s in series for t, _ in s.points] + [d.time for d in doses]
    times += [s.time for s in sessions]
    times += [d.window[1] for d in doses if d.window]
    if not times:
        now = datetime(2000, 1, 1)
        return now, now + timedelta(days=7)
    low, high = min(times), max(times)
    margin = max((high - low) * 0.03, timedelta(hours=12))
    # A time at the calendar's edge (year 1 or 9999) leaves no room for the margin.
    start = low - margin if low - datetime.min > margin else datetime.min
    end = high + margin if datetime.max - high > margin else datetime.max
    return start, end


def _shade_doses(ax: Axes, doses: list[Dose], strength: float = 1.0) -> None:
    for dose in doses:
        if dose.window:
            ax.axvspan(*dose.window, color=WINDOW_COLOUR, alpha=0.12 * strength, lw=0, zorder=0.5)
        if dose.optimal:
            ax.axvspan(*dose.optimal, color=OPTIMAL_COLOUR, alpha=0.16 * strength, lw=0, zorder=0.6)
        ax.axvline(dose.time, color=PURPLE, lw=1.1, ls=(0, (4, 2)), zorder=1)


def _draw_strip(strip: Axes, doses: list[Dose], sessions: list[Session], figure: Figure) -> None:
    """The top strip: each dose (▼) and EMDR session (●) with its hours after the dose."""
    _shade_doses(strip, doses, strength=1.6)
    strip.set_ylim(0, 1)
    strip.set_yticks([])
    strip.spines["left"].set_visible(False)
    strip.tick_params(labelbottom=False)
    strip.set_title("Doses, plasticity windows and EMDR sessions", fontsize=9, color=INK)
    strip.scatter(
        [d.time for d in doses], [0.86] * len(doses), marker="v", s=46, color=PURPLE, zorder=3
    )
    strip.scatter(
        [s.time for s in sessions], [0.42] * len(sessions), marker="o", s=30, color=GREEN, zorder=3
    )
    labelled = [(s.time, f"+{plain(s.offset_hours, 0)} h") for s in sessions if s.offset_hours]
    _stagger(strip, labelled, figure)


def _stagger(strip: Axes, labels: list[tuple[datetime, str]], figure: Figure) -> None:
    """Write the session labels on two rows, and leave out those that would still overlap."""
    low, high = (mdates.num2date(x).replace(tzinfo=None) for x in strip.get_xlim())
    width_px = figure.get_figwidth() * figure.dpi * 0.9
    per_px = (high - low) / width_px
    char = timedelta(seconds=(per_px * 6.2).total_seconds())  # ~6 px a character at 8 pt
    free = [low, low]
    for time, text in labels:
        half = char * (len(text) / 2 + 0.6)
        row = next((i for i in (0, 1) if time - half >= free[i]), None)
        if row is None:
            continue
        free[row] = time + half
        strip.text(
            time,
            0.24 if row else 0.56,
            text,
            ha="center",
            va="top" if row else "bottom",
            fontsize=7.5,
            color=GREEN,
        )


def _draw_series(ax: Axes, item: Series, doses: list[Dose]) -> None:
    measure = item.measure
    if measure is not None and measure.score is not None:
        low, high = float(measure.score.min), float(measure.score.max)
        pad = (high - low) * 0.04
        ax.set_ylim(low - pad, high + pad)
    _draw_bands(ax, measure)
    _shade_doses(ax, doses)
    for run in _runs(item):
        times = [t for t, _ in run]
        values = [v for _, v in run]
        ax.plot(times, values, color=BLUE, lw=1.8, marker="o", ms=4.5, zorder=4)
    last_time, last_value = item.points[-1]
    ax.annotate(
        plain(last_value),
        (last_time, last_value),
        xytext=(6, 4),
        textcoords="offset points",
        fontsize=8.5,
        fontweight="bold",
        color=BLUE,
        zorder=5,
    )
    ax.set_title(item.title, fontsize=10)
    ax.text(
        1.0, 1.02, summary_text(item), transform=ax.transAxes, ha="right", va="bottom", fontsize=8.5
    )
    ax.set_ylabel("score")
    ax.grid(axis="y", color="#dddddd", lw=0.6)
    ax.set_axisbelow(True)


def _runs(item: Series) -> list[list[tuple[datetime, float]]]:
    """The points to join by a line: all of them, but in-session ratings only within a session."""
    if item.key not in IN_SESSION:
        return [item.points]
    runs: list[list[tuple[datetime, float]]] = []
    for point in item.points:
        if runs and point[0] - runs[-1][-1][0] <= SESSION_SPAN:
            runs[-1].append(point)
        else:
            runs.append([point])
    return runs


def _draw_bands(ax: Axes, measure: Measure | None) -> None:
    if measure is None:
        return
    colours = BAND_COLOURS[-len(measure.bands) :] if measure.bands else ()
    for band, colour in zip(measure.bands, colours, strict=False):
        ax.axhspan(band.min - 0.5, band.max + 0.5, color=colour, lw=0, zorder=0)
        ax.text(
            1.006,
            (band.min + band.max) / 2,
            band.display,
            transform=ax.get_yaxis_transform(),
            ha="left",
            va="center",
            fontsize=7.5,
            color="#8a5a2b",
            clip_on=False,
        )
    probable = measure.extra.get("probablePtsdFrom")
    if isinstance(probable, dict) and isinstance(probable.get("low"), int | float):
        ax.axhline(probable["low"], color="#8a5a2b", lw=0.9, ls=":", zorder=1)
        ax.text(
            1.006,
            probable["low"],
            f"probable PTSD\nfrom {probable['low']}",
            transform=ax.get_yaxis_transform(),
            ha="left",
            va="center",
            fontsize=7.5,
            color="#8a5a2b",
        )


def _legend() -> list[Any]:
    return [
        Line2D([], [], color=BLUE, marker="o", ms=4.5, lw=1.8, label="score"),
        Line2D([], [], color=PURPLE, lw=1.1, ls=(0, (4, 2)), marker="v", ms=6, label="dose"),
        Patch(color=WINDOW_COLOUR, alpha=0.25, label="plasticity window"),
        Patch(color=OPTIMAL_COLOUR, alpha=0.35, label="optimal window"),
        Line2D([], [], color=GREEN, marker="o", lw=0, ms=5.5, label="EMDR session (+h after dose)"),
        Patch(color=BAND_COLOURS[3], label="severity band"),
    ]
