"""What a trajectory chart draws, read from the `$outcomes` Parameters (the issue's contract):
each instrument's scores and summary, the doses with their plasticity windows, the sessions."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from services.outcomes.charts.drawing import moment, named, number, parts, plain
from services.outcomes.observations.measures import LOCAL, Measure, MeasureTable

# Panels top to bottom: depression, trauma, anxiety, dissociation, then the in-session ratings.
ORDER = ("phq9-total", "madrs-total", "pcl5-total", "gad7-total", "cadss-total", "suds", "voc")


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


@dataclass
class Trajectory:
    patient: str
    series: list[Series]
    doses: list[Dose]
    sessions: list[Session]


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


def read_trajectory(outcomes: dict[str, Any], measures: MeasureTable) -> Trajectory:
    """The scores by instrument, the doses and the sessions an `$outcomes` answer holds."""
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
    return Trajectory(_patient(outcomes), drawn, doses, sessions)


def summary_text(item: Series) -> str:
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
