"""The patient's latest body weight in kg: measured (outcomes' Observation replica), else
the screening's `body-weight` answer (intake's QuestionnaireResponse replica)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from services.scheduling.dosing.extensions import UCUM, number

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from shared.fhir.interactions import Interactions

BODY_WEIGHT = "http://loinc.org|29463-7"
LINK_ID = "body-weight"
# The avoirdupois pound is defined as exactly 0.45359237 kg (UCUM [lb_av]).
_KG_PER = {"kg": 1.0, "[lb_av]": 0.45359237, "g": 0.001}


def _kg(quantity: Any) -> float | None:
    """A UCUM mass quantity in kg (None: not a usable weight)."""
    if not isinstance(quantity, dict):
        return None
    value, code = number(quantity.get("value")), quantity.get("code")
    system = quantity.get("system")
    if value is None or value <= 0 or code not in _KG_PER or system not in (UCUM, None):
        return None
    return value * _KG_PER[code]


def _answer(items: list[Any]) -> float | None:
    """The first `body-weight` answer in kg, nested items included (kg when unitless)."""
    for item in items:
        if not isinstance(item, dict):
            continue
        if item.get("linkId") == LINK_ID:
            for answer in item.get("answer") or []:
                plain = number(answer.get("valueDecimal", answer.get("valueInteger")))
                found = _kg(answer.get("valueQuantity")) if plain is None else plain
                if found is not None and found > 0:
                    return found
        nested = [*(item.get("item") or [])]
        for answer in item.get("answer") or []:
            nested.extend(answer.get("item") or [])
        found = _answer(nested)
        if found is not None:
            return found
    return None


def latest_weight_kg(interactions: Interactions, session: Session, patient: str) -> float | None:
    """The latest body weight of `Patient/<id>` in kg, or None when none is known."""
    measured = [
        ("patient", patient),
        ("code", BODY_WEIGHT),
        ("status", "final,amended,corrected"),
        ("_sort", "-date"),
        ("_count", "20"),
    ]
    for observation in interactions.search(session, "Observation", measured, strict=True).resources:
        found = _kg(observation.get("valueQuantity"))
        if found is not None:
            return found
    screened = [
        ("patient", patient),
        ("status", "completed,amended"),
        ("_sort", "-authored"),
        ("_count", "20"),
    ]
    responses = interactions.search(session, "QuestionnaireResponse", screened, strict=True)
    for response in responses.resources:
        found = _answer(response.get("item") or [])
        if found is not None:
            return found
    return None
