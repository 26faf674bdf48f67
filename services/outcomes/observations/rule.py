"""Write rule on Observation: a measure outcomes knows (by code) has the value type, UCUM unit,
range and components its definition in measures/measures.json gives. Unknown codes are stored as
they are."""

from __future__ import annotations

from decimal import Decimal
from functools import cache
from typing import TYPE_CHECKING, Any

from services.outcomes.observations.code_system import measure_system
from services.outcomes.observations.measures import (
    SCORE_UNIT,
    UCUM,
    Measure,
    outcome_measures,
)
from shared.fhir.errors import invalid

if TYPE_CHECKING:
    from shared.fhir.rules import WriteContext

# An Observation in these states may lack a value: none is expected (registered) or it no
# longer stands (cancelled, entered-in-error).
NO_VALUE_NEEDED = frozenset({"registered", "cancelled", "entered-in-error"})


@cache
def _known(canonical_base: str) -> dict[tuple[str, str], Measure]:
    table = outcome_measures()
    return table.by_coding(measure_system(canonical_base, table))


def _measures_of(concept: Any, known: dict[tuple[str, str], Measure]) -> list[Measure]:
    """The measures a CodeableConcept's codings name, each once, in coding order."""
    found: list[Measure] = []
    codings = concept.get("coding") if isinstance(concept, dict) else None
    for coding in codings if isinstance(codings, list) else []:
        if not isinstance(coding, dict):
            continue
        measure = known.get((coding.get("system"), coding.get("code")))
        if measure is not None and measure not in found:
            found.append(measure)
    return found


def _name(measure: Measure) -> str:
    return f"{measure.code} ({measure.display})"


def _value_keys(element: dict[str, Any]) -> list[str]:
    return [key for key in element if key.startswith("value") and key != "value"]


def _decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return None
    return value if isinstance(value, Decimal) else Decimal(str(value))


def _plain(number: Decimal) -> str:
    return format(number.normalize(), "f") if number == number.to_integral() else str(number)


def _expected(measure: Measure) -> str:
    if measure.score is not None:
        return f"valueInteger {measure.score.text()} (or valueQuantity in UCUM {SCORE_UNIT})"
    units = ", ".join(measure.units)
    return f"valueQuantity in UCUM {units}"


def _check_score(measure: Measure, element: dict[str, Any], key: str, where: str) -> None:
    assert measure.score is not None
    if key == "valueQuantity":
        quantity = element[key]
        if quantity.get("system") != UCUM or quantity.get("code") != SCORE_UNIT:
            raise invalid(
                f"{_name(measure)} is a score: a valueQuantity must have system {UCUM} and "
                f"code {SCORE_UNIT}",
                [f"{where}.valueQuantity.{'system' if quantity.get('system') != UCUM else 'code'}"],
            )
        at, value = f"{where}.valueQuantity.value", _decimal(quantity.get("value"))
    elif key == "valueInteger":
        at, value = f"{where}.valueInteger", _decimal(element[key])
    else:
        raise invalid(
            f"{_name(measure)} must be a {_expected(measure)}, not {key}", [f"{where}.{key}"]
        )
    if value is None or value != value.to_integral() or not measure.score.holds(value):
        got = "no value" if value is None else _plain(value)
        raise invalid(
            f"{_name(measure)} must be an integer {measure.score.text()}; got {got}", [at]
        )


def _check_quantity(measure: Measure, element: dict[str, Any], key: str, where: str) -> None:
    if key != "valueQuantity":
        raise invalid(
            f"{_name(measure)} must be a {_expected(measure)}, not {key}", [f"{where}.{key}"]
        )
    quantity = element[key]
    units = ", ".join(measure.units)
    if quantity.get("system") != UCUM:
        raise invalid(
            f"{_name(measure)} must be a UCUM quantity (system {UCUM}) in {units}",
            [f"{where}.valueQuantity.system"],
        )
    unit = quantity.get("code")
    bounds = measure.units.get(unit) if isinstance(unit, str) else None
    if bounds is None:
        raise invalid(
            f"{_name(measure)} takes UCUM {units}, not {unit!r}", [f"{where}.valueQuantity.code"]
        )
    value = _decimal(quantity.get("value"))
    if value is None or not bounds.holds(value):
        got = "no value" if value is None else f"{_plain(value)} {unit}"
        # The file's bounds for quantities are data-quality bounds, never clinical thresholds.
        raise invalid(
            f"{_name(measure)} must be {bounds.text()} {unit} (a plausibility bound); got {got}",
            [f"{where}.valueQuantity.value"],
        )


def _check_value(measure: Measure, element: dict[str, Any], where: str, optional: bool) -> None:
    keys = _value_keys(element)
    if measure.value_type == "none":
        if keys:
            raise invalid(
                f"{_name(measure)} carries its values in components, not in {keys[0]}",
                [f"{where}.{keys[0]}"],
            )
        return
    if not keys:
        if optional or "dataAbsentReason" in element:
            return
        raise invalid(
            f"{_name(measure)} needs a {_expected(measure)}, or a dataAbsentReason",
            [f"{where}.value[x]"],
        )
    if measure.value_type == "score":
        _check_score(measure, element, keys[0], where)
    else:
        _check_quantity(measure, element, keys[0], where)


def _check_components(
    measure: Measure,
    resource: dict[str, Any],
    known: dict[tuple[str, str], Measure],
    optional: bool,
) -> None:
    """A panel names each component it needs (unless its status needs no values)."""
    if optional:
        return
    table = outcome_measures()
    components = resource.get("component") or []
    present = {m.key for c in components for m in _measures_of(c.get("code"), known)}
    for key in measure.components:
        if key not in present:
            part = table.measures[key]
            raise invalid(
                f"{_name(measure)} needs a component {_name(part)}", ["Observation.component"]
            )


def check_measures(context: WriteContext) -> None:
    """422 naming the element at fault when a known measure's value, unit, range or
    components are not what measures.json defines."""
    resource = context.resource
    if resource is None:
        return  # a delete
    known = _known(context.interactions.settings.canonical_base)
    optional = resource.get("status") in NO_VALUE_NEEDED
    for measure in _measures_of(resource.get("code"), known):
        _check_value(measure, resource, "Observation", optional)
        _check_components(measure, resource, known, optional)
    for i, component in enumerate(resource.get("component") or []):
        for measure in _measures_of(component.get("code"), known):
            _check_value(measure, component, f"Observation.component[{i}]", optional)
