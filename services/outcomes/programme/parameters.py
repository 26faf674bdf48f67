"""Parts of the Parameters resources the programme operations answer with."""

from __future__ import annotations

from typing import Any

from services.outcomes.observations.code_system import measure_system
from services.outcomes.observations.measures import LOCAL, Measure

# Figures are reported to this many decimals (far finer than any score's precision).
DECIMALS = 4


def decimal(name: str, value: float | None) -> list[dict[str, Any]]:
    """A valueDecimal part, or none when there is no value."""
    return [] if value is None else [{"name": name, "valueDecimal": round(value, DECIMALS)}]


def integer(name: str, value: int | None) -> list[dict[str, Any]]:
    return [] if value is None else [{"name": name, "valueInteger": value}]


def string(name: str, value: str | None) -> list[dict[str, Any]]:
    return [] if value is None else [{"name": name, "valueString": value}]


def instrument(measure: Measure, canonical_base: str) -> dict[str, Any]:
    """The `instrument` part: the measure's first code (local codes under the canonical base)."""
    system, code = measure.codes[0]
    if system == LOCAL:
        system = measure_system(canonical_base)
    return {
        "name": "instrument",
        "valueCoding": {"system": system, "code": code, "display": measure.display},
    }
