"""The `$outcomes` answer as a FHIR Parameters resource (part names as issue 11 gives them)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from services.outcomes.observations.code_system import measure_system
from services.outcomes.observations.measures import LOCAL, Measure
from services.outcomes.summary.change import MeasureSummary, number
from services.outcomes.summary.timeline import Dose, EmdrSession, Score, Timeline

# At one instant, a score comes first: a score taken at the dose's start is its baseline.
_ORDER = {"score": 0, "dose": 1, "emdr-session": 2}


def date_time(moment: datetime) -> str:
    """A stored naive-UTC time as a FHIR dateTime (seconds, or microseconds when it has them)."""
    spec = "microseconds" if moment.microsecond else "seconds"
    return moment.isoformat(timespec=spec) + "Z"


def instrument(measure: Measure, canonical_base: str) -> dict[str, str]:
    """The Coding of a measure: its first code, a local one under the programme's CodeSystem."""
    system, code = measure.codes[0]
    if system == LOCAL:
        system = measure_system(canonical_base)
    return {"system": system, "code": code, "display": measure.display}


def plain(value: Decimal | float) -> int | float:
    """A decimal as the JSON number it reads as (18, 2.5, -41.7): an int when whole, else the
    float whose shortest text is the decimal's (renderers read the body as plain numbers)."""
    exact = value if isinstance(value, Decimal) else number(value)
    return int(exact) if exact == exact.to_integral_value() else float(exact)


def _ref(res_type: str, res_id: str) -> dict[str, str]:
    return {"reference": f"{res_type}/{res_id}"}


def _part(name: str, key: str, value: Any) -> dict[str, Any]:
    return {"name": name, key: value}


def measure_parameter(summary: MeasureSummary, canonical_base: str) -> dict[str, Any]:
    """One `measure` parameter: the parts that apply to this instrument and patient."""
    parts: list[dict[str, Any]] = [
        {"name": "instrument", "valueCoding": instrument(summary.measure, canonical_base)},
        {"name": "baseline", "valueDecimal": plain(summary.baseline.value)},
        {"name": "baselineTime", "valueDateTime": date_time(summary.baseline.effective)},
    ]
    if summary.latest is not None:
        parts.append({"name": "latest", "valueDecimal": plain(summary.latest.value)})
        parts.append({"name": "latestTime", "valueDateTime": date_time(summary.latest.effective)})
    if summary.change is not None:
        parts.append({"name": "change", "valueDecimal": plain(summary.change)})
    if summary.percent_change is not None:
        # Always with its decimal, as the percentage is rounded to one.
        parts.append({"name": "percentChange", "valueDecimal": float(summary.percent_change)})
    if summary.severity_band is not None:
        parts.append({"name": "severityBand", "valueCode": summary.severity_band.code})
    for name, flag in (
        ("response", summary.response),
        ("remission", summary.remission),
        ("clinicallyMeaningfulChange", summary.clinically_meaningful_change),
    ):
        if flag is not None:
            parts.append({"name": name, "valueBoolean": flag})
    return {"name": "measure", "part": parts}


def _dose_parts(dose: Dose) -> list[dict[str, Any]]:
    parts = [_part("reference", "valueReference", _ref("MedicationAdministration", dose.dose_id))]
    for name, moment in (
        ("windowStart", dose.window_start),
        ("optimalStart", dose.optimal_start),
        ("optimalEnd", dose.optimal_end),
        ("windowEnd", dose.window_end),
    ):
        if moment is not None:
            parts.append(_part(name, "valueDateTime", date_time(moment)))
    return parts


def _session_parts(emdr: EmdrSession) -> list[dict[str, Any]]:
    parts = [_part("reference", "valueReference", _ref("Appointment", emdr.appointment_id))]
    if emdr.offset_hours is not None:
        parts.append(_part("offsetHours", "valueDecimal", plain(round(emdr.offset_hours, 2))))
    if emdr.dose_id is not None:
        parts.append(
            _part("dose", "valueReference", _ref("MedicationAdministration", emdr.dose_id))
        )
    return parts


def _score_parts(score: Score, measure: Measure, canonical_base: str) -> list[dict[str, Any]]:
    return [
        _part("reference", "valueReference", _ref("Observation", score.obs_id)),
        _part("instrument", "valueCoding", instrument(measure, canonical_base)),
        _part("value", "valueDecimal", plain(score.value)),
    ]


def event_parameters(
    timeline: Timeline, measures: dict[str, Measure], canonical_base: str
) -> list[dict[str, Any]]:
    """One `event` parameter per dose, EMDR session and score, in time order."""
    events: list[tuple[datetime, int, str, str, list[dict[str, Any]]]] = []
    for dose in timeline.doses:
        events.append((dose.start, _ORDER["dose"], dose.dose_id, "dose", _dose_parts(dose)))
    for emdr in timeline.sessions:
        key = (emdr.start, _ORDER["emdr-session"], emdr.appointment_id)
        events.append((*key, "emdr-session", _session_parts(emdr)))
    for score in timeline.scores:
        measure = measures.get(score.measure)
        if measure is not None:  # a measure since removed from the file is not reported
            key = (score.effective, _ORDER["score"], score.obs_id)
            events.append((*key, "score", _score_parts(score, measure, canonical_base)))
    return [
        {
            "name": "event",
            "part": [
                _part("type", "valueCode", kind),
                _part("time", "valueDateTime", date_time(moment)),
                *parts,
            ],
        }
        for moment, _rank, _id, kind, parts in sorted(events, key=lambda e: e[:3])
    ]
