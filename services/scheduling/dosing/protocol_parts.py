"""The parts of a dosing protocol (dose, course, monitoring) and the checks of each as read."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from services.scheduling.dosing.window import Offsets


class ProtocolFileError(ValueError):
    """A dosing protocol file that cannot be used: the service does not start with it."""


@dataclass(frozen=True)
class Coding:
    """A code in its system (routes: SNOMED CT; medications: RxNorm)."""

    system: str
    code: str


@dataclass(frozen=True)
class Dose:
    """The dose range: per kg of body weight (`mg/kg`) or absolute (`mg`)."""

    unit: Literal["mg", "mg/kg"]
    min: float
    usual: float
    max: float
    max_mg: float | None = None  # an absolute ceiling on a per-kg dose
    multiple_of: float | None = None  # e.g. 28 mg per nasal spray device


@dataclass(frozen=True)
class Phase:
    """Sessions per week from one week of the course (to `to_week`, or on)."""

    from_week: int
    to_week: int | None
    per_week_min: float
    per_week_max: float


@dataclass(frozen=True)
class Monitoring:
    """Observation after each dose, the pre-dose blood pressure hold and rescue thresholds."""

    observation_hours: float
    hold_systolic_above: float
    hold_diastolic_above: float
    rescue: dict[str, dict[str, float]]


def number(value: Any, where: str, *, positive: bool = False) -> float:
    """A finite non-negative number (positive when asked) from the file."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ProtocolFileError(f"{where} must be a number")
    if value < 0 or (positive and value == 0):
        raise ProtocolFileError(f"{where} must be {'above' if positive else 'at least'} 0")
    return float(value)


def coding(data: Any, where: str) -> Coding:
    if not isinstance(data, dict) or not data.get("system") or not data.get("code"):
        raise ProtocolFileError(f"{where} needs a system and a code")
    return Coding(str(data["system"]), str(data["code"]))


def dose(data: Any, where: str) -> Dose:
    if not isinstance(data, dict) or data.get("unit") not in ("mg", "mg/kg"):
        raise ProtocolFileError(f"{where}.unit must be mg or mg/kg")
    low, usual, high = (
        number(data.get(key), f"{where}.{key}", positive=True) for key in ("min", "usual", "max")
    )
    if not low <= usual <= high:
        raise ProtocolFileError(f"{where}: min <= usual <= max is needed ({low}, {usual}, {high})")
    ceiling = data.get("maxMg")
    step = data.get("multipleOf")
    return Dose(
        unit=data["unit"],
        min=low,
        usual=usual,
        max=high,
        max_mg=None if ceiling is None else number(ceiling, f"{where}.maxMg", positive=True),
        multiple_of=None if step is None else number(step, f"{where}.multipleOf", positive=True),
    )


def offsets(data: Any, where: str) -> Offsets:
    if not isinstance(data, dict):
        raise ProtocolFileError(f"{where} must be an object")
    keys = ("startHours", "optimalStartHours", "optimalEndHours", "endHours")
    found = Offsets(*(number(data.get(key), f"{where}.{key}") for key in keys))
    problem = found.problem()
    if problem:
        raise ProtocolFileError(f"{where}: {problem}")
    return found


def phases(data: Any, where: str) -> tuple[Phase, ...]:
    if not isinstance(data, list):
        raise ProtocolFileError(f"{where} must be a list")
    found: list[Phase] = []
    for index, item in enumerate(data):
        at = f"{where}[{index}]"
        if not isinstance(item, dict):
            raise ProtocolFileError(f"{at} must be an object")
        to_week = item.get("toWeek")
        phase = Phase(
            from_week=int(number(item.get("fromWeek"), f"{at}.fromWeek", positive=True)),
            to_week=None if to_week is None else int(number(to_week, f"{at}.toWeek")),
            per_week_min=number(item.get("perWeekMin"), f"{at}.perWeekMin", positive=True),
            per_week_max=number(item.get("perWeekMax"), f"{at}.perWeekMax", positive=True),
        )
        if phase.per_week_min > phase.per_week_max:
            raise ProtocolFileError(f"{at}: perWeekMin is above perWeekMax")
        if phase.to_week is not None and phase.to_week < phase.from_week:
            raise ProtocolFileError(f"{at}: toWeek is before fromWeek")
        if found and (found[-1].to_week is None or phase.from_week <= found[-1].to_week):
            raise ProtocolFileError(f"{at} overlaps the phase before it")
        found.append(phase)
    return tuple(found)


def monitoring(data: Any, where: str) -> Monitoring:
    if not isinstance(data, dict):
        raise ProtocolFileError(f"{where} must be an object")
    hold = data.get("bloodPressureHold") or {}
    rescue = data.get("rescue") or {}
    checked: dict[str, dict[str, float]] = {}
    for name in ("repeatedBloodPressure", "singleBloodPressure", "heartRate"):
        part = rescue.get(name)
        if not isinstance(part, dict) or not part:
            raise ProtocolFileError(f"{where}.rescue.{name} must be an object of numbers")
        checked[name] = {
            key: number(value, f"{where}.rescue.{name}.{key}", positive=True)
            for key, value in part.items()
        }
    return Monitoring(
        observation_hours=number(
            data.get("observationHours"), f"{where}.observationHours", positive=True
        ),
        hold_systolic_above=number(
            hold.get("systolicAbove"), f"{where}.bloodPressureHold.systolicAbove", positive=True
        ),
        hold_diastolic_above=number(
            hold.get("diastolicAbove"), f"{where}.bloodPressureHold.diastolicAbove", positive=True
        ),
        rescue=checked,
    )
