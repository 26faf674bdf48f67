"""Vital-sign readings from Observations and the protocol's thresholds, pure computation.

A blood pressure is the panel 85354-9 (components 8480-6 systolic, 8462-4 diastolic) or a
single systolic or diastolic Observation; heart rate is 8867-4. Thresholds come from the
protocol file's `monitoring` (protocol_parts.Monitoring), never from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from services.scheduling.dosing.extensions import number
from services.scheduling.dosing.protocol_parts import Monitoring

LOINC = "http://loinc.org"
BP_PANEL, SYSTOLIC, DIASTOLIC, HEART_RATE = "85354-9", "8480-6", "8462-4", "8867-4"
FINAL = ("final", "amended", "corrected")


@dataclass(frozen=True)
class Reading:
    """One Observation's vital signs (None: not measured in it) and when it was taken."""

    reference: str
    taken: datetime
    systolic: float | None = None
    diastolic: float | None = None
    heart_rate: float | None = None


def _codes(concept: Any) -> set[str]:
    codings = (concept or {}).get("coding") or []
    return {c.get("code") for c in codings if c.get("system") == LOINC}


def taken_at(observation: dict[str, Any]) -> datetime | None:
    """When the Observation was taken (an aware datetime), else None."""
    text = observation.get("effectiveDateTime") or observation.get("effectiveInstant")
    text = text or (observation.get("effectivePeriod") or {}).get("start")
    if not isinstance(text, str) or "T" not in text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _value(holder: dict[str, Any]) -> float | None:
    quantity = holder.get("valueQuantity") or {}
    return number(quantity.get("value"))


def reading_of(observation: dict[str, Any]) -> Reading | None:
    """The vital signs an Observation carries (None: not a final vital sign with a time)."""
    taken = taken_at(observation)
    if observation.get("status") not in FINAL or taken is None:
        return None
    codes, found = _codes(observation.get("code")), {}
    for component in observation.get("component") or [] if BP_PANEL in codes else []:
        for code in _codes(component.get("code")) & {SYSTOLIC, DIASTOLIC}:
            found[code] = _value(component)
    for code in codes & {SYSTOLIC, DIASTOLIC, HEART_RATE}:
        found[code] = _value(observation)
    if not any(value is not None for value in found.values()):
        return None
    reference = f"Observation/{observation.get('id')}"
    return Reading(
        reference, taken, found.get(SYSTOLIC), found.get(DIASTOLIC), found.get(HEART_RATE)
    )


def _shown(reading: Reading) -> str:
    bp = f"{reading.systolic or '-'}/{reading.diastolic or '-'} mmHg"
    return f"{reading.reference} ({bp})"


def hold_problem(reading: Reading, monitoring: Monitoring) -> str | None:
    """Why a pre-dose reading holds the dose ("above" the threshold: strictly greater)."""
    high_s = reading.systolic is not None and reading.systolic > monitoring.hold_systolic_above
    high_d = reading.diastolic is not None and reading.diastolic > monitoring.hold_diastolic_above
    if not (high_s or high_d):
        return None
    limit = f"{monitoring.hold_systolic_above:g}/{monitoring.hold_diastolic_above:g} mmHg"
    return f"Pre-dose blood pressure {_shown(reading)} is above the hold threshold {limit}"


def _bp_at_least(reading: Reading, part: dict[str, float]) -> bool:
    s, d = reading.systolic, reading.diastolic
    return (s is not None and s >= part["systolicAtLeast"]) or (
        d is not None and d >= part["diastolicAtLeast"]
    )


@dataclass(frozen=True)
class Rescue:
    """A rescue threshold crossed, in words, and the readings that crossed it."""

    text: str
    readings: tuple[Reading, ...]


def rescue_problems(
    latest: Reading, earlier: list[Reading], monitoring: Monitoring
) -> list[Rescue]:
    """The rescue thresholds the latest post-dose reading crosses, given the earlier ones
    of the same observation period."""
    rescue: dict[str, dict[str, float]] = monitoring.rescue
    found: list[Rescue] = []
    single = rescue["singleBloodPressure"]
    s, d = latest.systolic, latest.diastolic
    if (s is not None and s > single["systolicAbove"]) or (
        d is not None and d > single["diastolicAbove"]
    ):
        limit = f"{single['systolicAbove']:g}/{single['diastolicAbove']:g} mmHg"
        text = f"Post-dose blood pressure {_shown(latest)} is above {limit}"
        found.append(Rescue(text, (latest,)))
    repeated = rescue["repeatedBloodPressure"]
    if _bp_at_least(latest, repeated):
        minutes = repeated["minutesApart"]
        apart = timedelta(minutes=minutes)
        before = [
            r for r in earlier if _bp_at_least(r, repeated) and latest.taken - r.taken >= apart
        ]
        if len(before) + 1 >= repeated["readings"]:
            shown = ", ".join(_shown(r) for r in [*before, latest])
            limit = f"{repeated['systolicAtLeast']:g}/{repeated['diastolicAtLeast']:g} mmHg"
            text = f"Post-dose blood pressure at or above {limit}, {minutes:g} min apart: {shown}"
            found.append(Rescue(text, (*before, latest)))
    heart = rescue["heartRate"]
    if latest.heart_rate is not None and latest.heart_rate > heart["above"]:
        span = timedelta(minutes=heart["forMinutes"])
        # Sustained: the run of high readings just before this one lasts the span.
        run = []
        for reading in sorted(earlier, key=lambda r: r.taken, reverse=True):
            if reading.heart_rate is None:
                continue
            if reading.heart_rate <= heart["above"]:
                break
            run.append(reading)
        if run and latest.taken - run[-1].taken >= span:
            text = (
                f"Heart rate above {heart['above']:g}/min for {heart['forMinutes']:g} min: "
                f"{run[-1].reference} ({run[-1].heart_rate:g}), "
                f"{latest.reference} ({latest.heart_rate:g})"
            )
            found.append(Rescue(text, (*reversed(run), latest)))
    return found
