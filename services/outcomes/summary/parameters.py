"""The `$outcomes` answer as a FHIR Parameters resource (part names as issue 11 gives them)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from services.outcomes.observations.code_system import measure_system
from services.outcomes.observations.measures import LOCAL, Measure
from services.outcomes.summary.change import MeasureSummary, number
from services.outcomes.summary.timeline import Timeline

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


def _reference(res_type: str, res_id: str) -> dict[str, str]:
    return {"reference": f"{res_type}/{res_id}"}


def measure_parameter(summary: MeasureSummary, canonical_base: str) -> dict[str, Any]:
    """One `measure` parameter: the parts that apply to this instrument and patient."""
    parts: list[dict[str, Any]] = [
        {"name": "instrument", "valueCoding": instrument(summary.measure, canonical_base)},
        {"name": "baseline", "valueDecimal": number(summary.baseline.value)},
        {"name": "baselineTime", "valueDateTime": date_time(summary.baseline.effective)},
    ]
    if summary.latest is not None:
        parts.append({"name": "latest", "valueDecimal": number(summary.latest.value)})
        parts.append({"name": "latestTime", "valueDateTime": date_time(summary.latest.effective)})
    if summary.change is not None:
        parts.append({"name": "change", "valueDecimal": summary.change})
    if summary.percent_change is not None:
        parts.append({"name": "percentChange", "valueDecimal": summary.percent_change})
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


def event_parameters(
    timeline: Timeline, measures: dict[str, Measure], canonical_base: str
) -> list[dict[str, Any]]:
    """One `event` parameter per dose, EMDR session and score, in time order."""
    events: list[tuple[datetime, int, str, list[dict[str, Any]]]] = []
    for dose in timeline.doses:
        parts = [
            {
                "name": "reference",
                "valueReference": _reference("MedicationAdministration", dose.dose_id),
            }
        ]
        for name, moment in (
            ("windowStart", dose.window_start),
            ("optimalStart", dose.optimal_start),
            ("optimalEnd", dose.optimal_end),
            ("windowEnd", dose.window_end),
        ):
            if moment is not None:
                parts.append({"name": name, "valueDateTime": date_time(moment)})
        events.append((dose.start, _ORDER["dose"], dose.dose_id, parts))
    for emdr in timeline.sessions:
        parts = [
            {"name": "reference", "valueReference": _reference("Appointment", emdr.appointment_id)}
        ]
        if emdr.offset_hours is not None:
            parts.append(
                {"name": "offsetHours", "valueDecimal": number(round(emdr.offset_hours, 2))}
            )
        if emdr.dose_id is not None:
            parts.append(
                {
                    "name": "dose",
                    "valueReference": _reference("MedicationAdministration", emdr.dose_id),
                }
            )
        events.append((emdr.start, _ORDER["emdr-session"], emdr.appointment_id, parts))
    for score in timeline.scores:
        parts = [
            {"name": "reference", "valueReference": _reference("Observation", score.obs_id)},
            {
                "name": "instrument",
                "valueCoding": instrument(measures[score.measure], canonical_base),
            },
            {"name": "value", "valueDecimal": number(score.value)},
        ]
        events.append((score.effective, _ORDER["score"], score.obs_id, parts))
    kinds = {rank: kind for kind, rank in _ORDER.items()}
    return [
        {
            "name": "event",
            "part": [
                {"name": "type", "valueCode": kinds[rank]},
                {"name": "time", "valueDateTime": date_time(moment)},
                *parts,
            ],
        }
        for moment, rank, _id, parts in sorted(events, key=lambda e: e[:3])
    ]
