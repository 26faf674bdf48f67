"""A patient's trajectory from `$outcomes`: scores over time in their severity bands, with the
doses, their plasticity windows and the EMDR sessions marked."""

from __future__ import annotations

from dataclasses import dataclass, field
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
    moment,
    named,
    new_figure,
    number,
    parts,
    plain,
)
from services.outcomes.observations.measures import LOCAL, Measure, MeasureTable

# Panels top to bottom: depression, trauma, anxiety, dissociation, then the in-session ratings.
ORDER = ("phq9-total", "madrs-total", "pcl5-total", "gad7-total", "cadss-total", "suds", "voc")
# Severity bands from light to deep (one warm hue: readable under the blue score line).
BAND_COLOURS = ("#fcfcfa", "#faf5e9", "#f6ecd6", "#f1e0be", "#ebd2a6", "#e4c28e")
WINDOW_COLOUR, OPTIMAL_COLOUR = SKY, BLUE
# SUDS and VOC are taken at the start and end of each session: a line joins only those two.
IN_SESSION = frozenset({"suds", "voc"})
SESSION_SPAN = timedelta(hours=6)


@dataclass
class Series:
    """One instrument's scores, and what `$outcomes` says of them."""

    key: str
    title: str
    measure: Measure | None
    points: list[tuple[datetime, float]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass
class Dose:
    time: datetime
    window: tuple[datetime, datetime] | None
    optimal: tuple[datetime, datetime] | None


@dataclass
class Session:
    time: datetime
    offset_hours: float | None


def render_trajectory(outcomes: dict[str, Any], fmt: str, *, measures: MeasureTable) -> bytes:
    """The `$outcomes` Parameters as a PNG or SVG trajectory chart."""
    series, doses, sessions = _read(outcomes, measures)
    patient = _patient(outcomes)
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


# ---- reading ---------------------------------------------------------------------------------
def _patient(outcomes: dict[str, Any]) -> str:
    for parameter in named(outcomes, "patient"):
        reference = parameter.get("valueReference") or {}
        if isinstance(reference.get("reference"), str):
            return reference["reference"]
    return "Patient"


def _measure_of(coding: Any, measures: MeasureTable) -> tuple[str, Measure | None]:
    """The measure a coding names (local codes under any `.../CodeSystem/<local id>`)."""
    if not isinstance(coding, dict):
        return "unknown", None
    system, code = str(coding.get("system", "")), str(coding.get("code", ""))
    local_suffix = f"/CodeSystem/{measures.local['id']}"
    for measure in measures.measures.values():
        for known_system, known_code in measure.codes:
            local = known_system == LOCAL and system.endswith(local_suffix)
            if known_code == code and (known_system == system or local):
                return measure.key, measure
    return f"{system}|{code}", None


def _series(coding: Any, measures: MeasureTable, found: dict[str, Series]) -> Series:
    key, measure = _measure_of(coding, measures)
    if key not in found:
        display = coding.get("display") if isinstance(coding, dict) else None
        title = measure.display if measure else str(display or coding.get("code") or key)
        found[key] = Series(key, title, measure)
    return found[key]


def _span(start: Any, end: Any) -> tuple[datetime, datetime] | None:
    low, high = moment(start), moment(end)
    return (low, high) if low and high and low <= high else None


def _read(
    outcomes: dict[str, Any], measures: MeasureTable
) -> tuple[list[Series], list[Dose], list[Session]]:
    found: dict[str, Series] = {}
    for parameter in named(outcomes, "measure"):
        summary = parts(parameter)
        _series(summary.get("instrument"), measures, found).summary = summary
    doses, sessions = [], []
    for parameter in named(outcomes, "event"):
        event = parts(parameter)
        time = moment(event.get("time"))
        if time is None:
            continue
        kind = event.get("type")
        if kind == "score":
            score = number(event.get("value"))
            if score is not None:
                _series(event.get("instrument"), measures, found).points.append((time, score))
        elif kind == "dose":
            window = _span(event.get("windowStart"), event.get("windowEnd"))
            optimal = _span(event.get("optimalStart"), event.get("optimalEnd"))
            doses.append(Dose(time, window, optimal))
        elif kind == "emdr-session":
            sessions.append(Session(time, number(event.get("offsetHours"))))
    rank = {key: i for i, key in enumerate(ORDER)}
    drawn = [s for s in found.values() if s.points]
    drawn.sort(key=lambda s: (rank.get(s.key, len(ORDER)), s.title))
    for item in drawn:
        item.points.sort()
    return drawn, doses, sessions


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
    return low - margin, high + margin


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
        1.0, 1.02, _summary(item), transform=ax.transAxes, ha="right", va="bottom", fontsize=8.5
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


def _summary(item: Series) -> str:
    """Baseline -> latest, the change, and the verdicts `$outcomes` gave."""
    summary = item.summary
    baseline, latest = number(summary.get("baseline")), number(summary.get("latest"))
    if baseline is None:
        return ""
    text = f"baseline {plain(baseline)}"
    if latest is not None:
        text += f" \u2192 latest {plain(latest)}"
        percent = number(summary.get("percentChange"))
        if percent is not None:
            text += f" ({plain(percent, 0)} %)"
    band = summary.get("severityBand")
    if isinstance(band, str):
        text += f"   \u00b7 {band.replace('-', ' ')}"
    for part, words in (
        ("response", "response"),
        ("remission", "remission"),
        ("clinicallyMeaningfulChange", "meaningful change"),
    ):
        if summary.get(part) is True:
            text += f"   \u2713 {words}"
        elif summary.get(part) is False:
            text += f"   no {words}"
    return text


def _legend() -> list[Any]:
    return [
        Line2D([], [], color=BLUE, marker="o", ms=4.5, lw=1.8, label="score"),
        Line2D([], [], color=PURPLE, lw=1.1, ls=(0, (4, 2)), marker="v", ms=6, label="dose"),
        Patch(color=WINDOW_COLOUR, alpha=0.25, label="plasticity window"),
        Patch(color=OPTIMAL_COLOUR, alpha=0.35, label="optimal window"),
        Line2D([], [], color=GREEN, marker="o", lw=0, ms=5.5, label="EMDR session (+h after dose)"),
        Patch(color=BAND_COLOURS[3], label="severity band"),
    ]
