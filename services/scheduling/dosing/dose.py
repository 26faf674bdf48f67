"""Dose checks against a protocol's range, pure: absolute (mg) and per body weight (mg/kg)."""

from __future__ import annotations

from services.scheduling.dosing.protocol_parts import Dose


def _range(low: float, high: float, unit: str) -> str:
    return f"{low:g} to {high:g} {unit}"


def absolute_problem(dose: Dose, mg: float, protocol: str) -> str | None:
    """What is wrong with `mg` under the protocol without the patient's weight (None: fine).

    An mg protocol checks its range (and device multiples); an mg/kg one only its absolute
    ceiling, as its range needs the weight (per_kg_problem)."""
    if mg <= 0:
        return f"A dose of {mg:g} mg is not a dose"
    if dose.unit == "mg":
        if not dose.min <= mg <= dose.max:
            limits = _range(dose.min, dose.max, "mg")
            return f"{mg:g} mg is outside the dose range of {protocol} ({limits})"
        if dose.multiple_of and (mg / dose.multiple_of) % 1:
            return f"{mg:g} mg is not a multiple of {dose.multiple_of:g} mg under {protocol}"
        return None
    if dose.max_mg is not None and mg > dose.max_mg:
        return f"{mg:g} mg is above the {dose.max_mg:g} mg ceiling of {protocol}"
    return None


def per_kg_problem(dose: Dose, mg: float, weight_kg: float, protocol: str) -> str | None:
    """What is wrong with `mg` for a patient of `weight_kg` under an mg/kg protocol."""
    if dose.unit != "mg/kg":
        return absolute_problem(dose, mg, protocol)
    if weight_kg <= 0:
        raise ValueError("a body weight is above 0 kg")
    per_kg = mg / weight_kg
    if not dose.min <= per_kg <= dose.max:
        limits = _range(dose.min, dose.max, "mg/kg")
        return (
            f"{mg:g} mg is {per_kg:.2f} mg/kg at {weight_kg:g} kg, outside the dose range of "
            f"{protocol} ({limits})"
        )
    return absolute_problem(dose, mg, protocol)
