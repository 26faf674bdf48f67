"""MedicationAdministration under a dosing protocol: the dose check (a rule) and the window
stored on a completed administration (an enricher), so its own event carries the window.

The tailoring in force is the patient's CarePlan as current when the administration is
written; the window names that CarePlan version. Writing the administration again
recomputes it with the CarePlan then current.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from services.scheduling.dosing.course import find_course
from services.scheduling.dosing.dose import absolute_problem, per_kg_problem
from services.scheduling.dosing.extensions import (
    UCUM,
    number,
    override_reason,
    override_url,
    read_tailoring,
    window_extension,
    window_url,
    without,
)
from services.scheduling.dosing.per_kg import weight_of
from services.scheduling.dosing.window import compute_window
from shared.fhir.errors import FHIRError, invalid

if TYPE_CHECKING:
    from shared.fhir.rules import WriteContext

DOSE = "MedicationAdministration.dosage.dose"


def _mg(administration: dict[str, Any], completed: bool) -> float | None:
    """dosage.dose in mg (None when absent and not yet needed); 422 in any other unit."""
    dose = (administration.get("dosage") or {}).get("dose")
    if dose is None:
        if completed:
            raise invalid("A completed dose under a dosing protocol needs dosage.dose", [DOSE])
        return None
    value = number(dose.get("value"))
    if dose.get("system") != UCUM or dose.get("code") != "mg" or value is None:
        raise invalid("dosage.dose must be a quantity in UCUM mg", [DOSE])
    return value


def check_dose(context: WriteContext) -> None:
    """Write rule: the dose is in mg and within the protocol's range, unless a reason to
    go outside it is given (the dose-range-override extension, kept on the resource)."""
    administration = context.resource
    if administration is None:
        return
    course = find_course(context, administration)
    if course is None:
        return
    mg = _mg(administration, administration.get("status") == "completed")
    if mg is None:
        return
    protocol = course.protocol
    # A per-kg range needs the patient's latest body weight (422 without one).
    if protocol.dose.unit == "mg/kg":
        weight = weight_of(context, administration, protocol.reference)
        problem = per_kg_problem(protocol.dose, mg, weight, protocol.reference)
    else:
        problem = absolute_problem(protocol.dose, mg, protocol.reference)
    base = context.interactions.settings.canonical_base
    if problem and override_reason(administration, base) is None:
        raise FHIRError(
            422,
            f"Dose range rule: {problem}. To give it anyway, state the reason in the "
            f"extension {override_url(base)}",
            code="business-rule",
            expression=[DOSE],
        )


def _ended(administration: dict[str, Any]) -> datetime:
    """When the administration ended, to the minute or better; 422 naming the element."""
    if "effectivePeriod" in administration:
        where = "MedicationAdministration.effectivePeriod.end"
        text = (administration.get("effectivePeriod") or {}).get("end")
    else:
        where = "MedicationAdministration.effectiveDateTime"
        text = administration.get("effectiveDateTime")
    try:
        if not isinstance(text, str) or "T" not in text:
            raise ValueError(text)
        ended = datetime.fromisoformat(text.replace("Z", "+00:00"))
        if ended.tzinfo is None:
            raise ValueError(text)
    except ValueError:
        raise invalid(
            "A completed dose's window needs the time the administration ended", [where]
        ) from None
    return ended


def stamp_window(context: WriteContext) -> dict[str, Any]:
    """Enricher: the window of a completed protocol dose, replacing any a client sent."""
    administration = context.resource or {}
    base = context.interactions.settings.canonical_base
    cleaned = without(administration, window_url(base))
    if administration.get("status") != "completed":
        return cleaned
    course = find_course(context, administration)
    if course is None:
        return cleaned
    ended = _ended(administration)
    plan = course.care_plan
    tailoring = read_tailoring(plan, base) if plan is not None else None
    protocol = course.protocol
    window = compute_window(protocol.window, protocol.reference, ended, tailoring)
    version = f"CarePlan/{plan['id']}/_history/{plan['meta']['versionId']}" if plan else None
    stamped = window_extension(base, window, version)
    return {**cleaned, "extension": [*cleaned.get("extension", []), stamped]}
