"""Doses under a per-kg protocol: the patient's body weight, the mg/kg a dose amounts to,
and the `dose-per-kg` extension that keeps it on the administration (and its event)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from services.scheduling.dosing.course import find_course
from services.scheduling.dosing.extensions import UCUM, number, without
from services.scheduling.holds.weight import latest_weight_kg
from shared.fhir.errors import FHIRError

if TYPE_CHECKING:
    from shared.fhir.rules import WriteContext

SUBJECT = "MedicationAdministration.subject"


def per_kg_url(base: str) -> str:
    """valueQuantity in UCUM mg/kg: the dose over the latest body weight when written."""
    return f"{base}/StructureDefinition/dose-per-kg"


def weight_of(context: WriteContext, administration: dict[str, Any], protocol: str) -> float:
    """The patient's latest body weight in kg; 422 when none is known."""
    subject = (administration.get("subject") or {}).get("reference")
    weight = None
    if isinstance(subject, str) and subject.startswith("Patient/"):
        weight = latest_weight_kg(context.interactions, context.session, subject)
    if weight is None:
        raise FHIRError(
            422,
            f"Dose range rule: {protocol} doses per kg of body weight, and no body weight "
            "of the patient is known (no body-weight Observation, LOINC 29463-7, and no "
            "screening answer 'body-weight')",
            code="business-rule",
            expression=[SUBJECT, "MedicationAdministration.dosage.dose"],
        )
    return weight


def stamp_dose_per_kg(context: WriteContext) -> dict[str, Any]:
    """Enricher: the mg/kg of a dose under a per-kg protocol, replacing any a client sent
    (check_dose has already refused a dose without a weight or in another unit)."""
    administration = context.resource or {}
    base = context.interactions.settings.canonical_base
    cleaned = without(administration, per_kg_url(base))
    course = find_course(context, administration)
    mg = number(((administration.get("dosage") or {}).get("dose") or {}).get("value"))
    if course is None or course.protocol.dose.unit != "mg/kg" or mg is None:
        return cleaned
    weight = weight_of(context, administration, course.protocol.reference)
    stamped = {
        "url": per_kg_url(base),
        "valueQuantity": {
            "value": round(mg / weight, 4),
            "unit": "mg/kg",
            "system": UCUM,
            "code": "mg/kg",
        },
    }
    return {**cleaned, "extension": [*cleaned.get("extension", []), stamped]}
