"""What the pages show, from the API's answers: names, score tables and programme figures."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from services.outcomes.observations.code_system import measure_system
from services.outcomes.observations.measures import Measure, outcome_measures

# Measures whose response is a 50 % reduction (as $outcomes has it).
RESPONSE_MEASURES = ("phq9-total", "madrs-total")


def patient_name(patient: dict[str, Any]) -> str:
    """The patient's name as a clinician reads it (official first), else their id."""
    names = patient.get("name") or []
    chosen = next((n for n in names if n.get("use") == "official"), names[0] if names else {})
    if chosen.get("text"):
        return str(chosen["text"])
    parts = [*chosen.get("prefix", []), *chosen.get("given", []), chosen.get("family", "")]
    text = " ".join(p for p in parts if p)
    return text or f"Patient {patient.get('id', '')}"


def _value(part: dict[str, Any]) -> Any:
    return next((v for k, v in part.items() if k.startswith("value")), None)


def parameters(resource: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """Each `name` parameter as a dict of its parts' values (Coding, decimal, bool, ...)."""
    found = []
    for param in resource.get("parameter", []):
        if param.get("name") == name:
            found.append({p.get("name"): _value(p) for p in param.get("part", [])})
    return found


def top_value(resource: dict[str, Any], name: str) -> Any:
    """The value of a top-level parameter without parts."""
    return next((_value(p) for p in resource.get("parameter", []) if p.get("name") == name), None)


def top_values(resource: dict[str, Any], name: str) -> list[Any]:
    """Every value of a repeated top-level parameter (notes)."""
    params = resource.get("parameter", [])
    return [_value(p) for p in params if p.get("name") == name and _value(p) is not None]


def adherence(report: dict[str, Any]) -> str:
    """The share of EMDR sessions inside the optimal window, with its interval when given."""
    value = top_value(report, "windowAdherence")
    low, high = top_value(report, "windowAdherenceLow"), top_value(report, "windowAdherenceHigh")
    return _interval(value, low, high, percent)


def number(value: Any, digits: int = 1) -> str:
    """A number as the tables show it, or an em dash."""
    if value is None:
        return "—"
    try:
        quantized = Decimal(str(value)).quantize(Decimal(1).scaleb(-digits), ROUND_HALF_UP)
    except InvalidOperation:
        return "—"
    text = f"{quantized:,.{digits}f}" if digits else f"{quantized:,.0f}"
    return text.replace("-", "\u2212")  # a real minus sign


def signed(value: Any, digits: int = 1) -> str:
    text = number(value, digits)
    return f"+{text}" if value is not None and text != "—" and Decimal(str(value)) > 0 else text


def percent(value: Any, digits: int = 0) -> str:
    """A fraction 0-1 as a percentage."""
    return "—" if value is None else f"{number(Decimal(str(value)) * 100, digits)} %"


def day(value: Any) -> str:
    """An instant or date as a day a clinician reads (12 Mar 2026)."""
    if not value:
        return ""
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).strftime("%-d %b %Y")
    except ValueError:
        return str(value)


def yes_no(value: Any) -> str:
    return "—" if value is None else ("Yes" if value else "No")


class Instruments:
    """Measures by coding, with the local codes under this service's canonical base."""

    def __init__(self, canonical_base: str) -> None:
        table = outcome_measures()
        self.by_coding = table.by_coding(measure_system(canonical_base, table))

    def measure(self, coding: dict[str, Any] | None) -> Measure | None:
        if not coding:
            return None
        return self.by_coding.get((coding.get("system", ""), coding.get("code", "")))

    def display(self, coding: dict[str, Any] | None) -> str:
        measure = self.measure(coding)
        if measure is not None:
            return measure.display
        return str((coding or {}).get("display") or (coding or {}).get("code") or "—")

    def band(self, coding: dict[str, Any] | None, code: Any) -> str:
        measure = self.measure(coding)
        bands = {b.code: b.display for b in measure.bands} if measure else {}
        return bands.get(str(code), str(code)) if code else "—"


@dataclass(frozen=True)
class ScoreRow:
    """One instrument of a patient: baseline, latest, change, band and the verdicts."""

    key: str
    instrument: str
    baseline: str
    baseline_day: str
    latest: str
    latest_day: str
    change: str
    percent_change: str
    band: str
    response: str
    remission: str
    meaningful: str


def score_rows(outcomes: dict[str, Any], instruments: Instruments) -> list[ScoreRow]:
    """The rows of the patient's score table, from `$outcomes`."""
    rows = []
    for part in parameters(outcomes, "measure"):
        coding = part.get("instrument")
        measure = instruments.measure(coding)
        rows.append(
            ScoreRow(
                key=measure.key if measure else str((coding or {}).get("code", "")),
                instrument=instruments.display(coding),
                baseline=number(part.get("baseline"), 0),
                baseline_day=day(part.get("baselineTime")),
                latest=number(part.get("latest"), 0),
                latest_day=day(part.get("latestTime")),
                change=signed(part.get("change"), 0),
                percent_change=_percent_change(part.get("percentChange")),
                band=instruments.band(coding, part.get("severityBand")),
                response=yes_no(part.get("response")),
                remission=yes_no(part.get("remission")),
                meaningful=yes_no(part.get("clinicallyMeaningfulChange")),
            )
        )
    return rows


def _percent_change(value: Any) -> str:
    return "—" if value is None else f"{signed(value, 0)} %"


def response_headline(rows: list[ScoreRow]) -> ScoreRow | None:
    """The row the page leads with: PHQ-9's (else MADRS's) response, if any."""
    for key in RESPONSE_MEASURES:
        for row in rows:
            if row.key == key and row.percent_change != "—":
                return row
    return None


@dataclass(frozen=True)
class ProgrammeRow:
    """One instrument across the programme."""

    instrument: str
    n: str
    baseline_mean: str
    latest_mean: str
    mean_change: str
    hedges_g: str
    response_rate: str
    remission_rate: str
    note: str


def _interval(value: Any, low: Any, high: Any, show: Any) -> str:
    if value is None:
        return "—"
    if low is None or high is None:
        return show(value)
    return f"{show(value)} ({show(low)} to {show(high)})"


def programme_rows(report: dict[str, Any], instruments: Instruments) -> list[ProgrammeRow]:
    """The rows of the programme table, from `$programme-report`."""
    rows = []
    for part in parameters(report, "measure"):
        rows.append(
            ProgrammeRow(
                instrument=instruments.display(part.get("instrument")),
                n=number(part.get("n"), 0),
                baseline_mean=number(part.get("baselineMean")),
                latest_mean=number(part.get("latestMean")),
                mean_change=signed(part.get("meanChange")),
                hedges_g=_interval(
                    part.get("hedgesG"),
                    part.get("hedgesGLow"),
                    part.get("hedgesGHigh"),
                    lambda v: number(v, 2),
                ),
                response_rate=_interval(
                    part.get("responseRate"),
                    part.get("responseRateLow"),
                    part.get("responseRateHigh"),
                    percent,
                ),
                remission_rate=percent(part.get("remissionRate")),
                note=str(part.get("note") or ""),
            )
        )
    return rows


@dataclass(frozen=True)
class CourseRow:
    """A dose or an EMDR session of the patient's course, as the timeline lists it."""

    kind: str
    day: str
    detail: str


def course_rows(outcomes: dict[str, Any]) -> list[CourseRow]:
    """Doses and EMDR sessions from `$outcomes`' events (scores are in the table and chart)."""
    rows = []
    for event in parameters(outcomes, "event"):
        when = event.get("time")
        if event.get("type") == "dose":
            start, end = event.get("optimalStart"), event.get("optimalEnd")
            detail = f"optimal window {_moment(start)} to {_moment(end)}" if start and end else ""
            rows.append(CourseRow("Dose", _moment(when), detail))
        elif event.get("type") == "emdr-session":
            offset = event.get("offsetHours")
            detail = f"{number(offset, 0)} h after the dose" if offset is not None else ""
            rows.append(CourseRow("EMDR session", _moment(when), detail))
    return rows


def _moment(value: Any) -> str:
    """An instant as a clinician reads it (12 Mar 2026 14:30, UTC)."""
    if not value:
        return ""
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return str(value)
    return moment.strftime("%-d %b %Y %H:%M") if "T" in str(value) else day(value)
