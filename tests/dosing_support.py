"""Builders for dosing tests: a CarePlan course with its tailoring, and doses."""

from __future__ import annotations

from typing import Any

from services.scheduling.dosing.extensions import (
    override_url,
    protocol_prefix,
    tailoring_url,
    window_url,
)
from services.scheduling.dosing.protocol import dosing_protocols
from tests.auth_support import bearer

BASE = "https://fhir.example.org/kemdr"
VERSION = dosing_protocols().version
TAILORING = tailoring_url(BASE)
WINDOW = window_url(BASE)
OVERRIDE = override_url(BASE)
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SNOMED = "http://snomed.info/sct"
ROUTES = {"iv": "47625008", "im": "78421000", "sublingual": "37839007", "nasal": "46713006"}
SUBLINGUAL = {
    "system": f"{BASE}/CodeSystem/compounded-medication",
    "code": "racemic-ketamine-sublingual",
}
SPRAVATO = {"system": RXNORM, "code": "2201625"}
INJECTION = {"system": RXNORM, "code": "238083"}
DR_ONE = "Practitioner/dr-1"


def clinician(user: str = DR_ONE) -> dict[str, str]:
    """Headers of a clinician's token (its fhirUser names the Practitioner)."""
    return bearer(user=user)


def tailoring(reason: str | None = "slow responder", **hours: float) -> dict[str, Any]:
    """The tailoring extension with the offsets given (e.g. optimalStart=12)."""
    subs: list[dict[str, Any]] = [
        {
            "url": name,
            "valueDuration": {
                "value": value,
                "unit": "h",
                "system": "http://unitsofmeasure.org",
                "code": "h",
            },
        }
        for name, value in hours.items()
    ]
    if reason is not None:
        subs.append({"url": "reason", "valueString": reason})
    return {"url": TAILORING, "extension": subs}


def care_plan(
    patient_id: str,
    protocol: str = "iv-racemic",
    *,
    version: str | None = VERSION,
    extension: list[dict[str, Any]] | None = None,
    status: str = "active",
) -> dict[str, Any]:
    canonical = f"{protocol_prefix(BASE)}{protocol}" + (f"|{version}" if version else "")
    body: dict[str, Any] = {
        "resourceType": "CarePlan",
        "status": status,
        "intent": "plan",
        "instantiatesCanonical": [canonical],
        "subject": {"reference": f"Patient/{patient_id}"},
        "title": "Ketamine-assisted EMDR course",
    }
    if extension:
        body["extension"] = extension
    return body


def dose(
    patient_id: str,
    *,
    medication: dict[str, str] = INJECTION,
    route: str | None = "iv",
    mg: float | None = 35,
    unit: str = "mg",
    status: str = "completed",
    ended: str = "2026-03-02T10:40:00Z",
    override: str | None = None,
    session: str | None = "",
) -> dict[str, Any]:
    """A MedicationAdministration of one dose that ended at `ended`, given in the dosing
    session `session` (by default `dosing-<patient>`, see holds_support.ready; None: none)."""
    dosage: dict[str, Any] = {}
    if route is not None:
        dosage["route"] = {"coding": [{"system": SNOMED, "code": ROUTES[route]}]}
    if mg is not None:
        dosage["dose"] = {
            "value": mg,
            "unit": unit,
            "system": "http://unitsofmeasure.org",
            "code": unit,
        }
    body: dict[str, Any] = {
        "resourceType": "MedicationAdministration",
        "status": status,
        "medicationCodeableConcept": {"coding": [medication]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectivePeriod": {"start": "2026-03-02T10:00:00Z", "end": ended},
    }
    if dosage:
        body["dosage"] = dosage
    if session is not None:
        appointment = f"Appointment/{session or f'dosing-{patient_id}'}"
        body["supportingInformation"] = [{"reference": appointment}]
    if override is not None:
        body["extension"] = [{"url": OVERRIDE, "valueString": override}]
    return body


def window_of(resource: dict[str, Any]) -> dict[str, str]:
    """The stored window extension's values by name."""
    (found,) = [e for e in resource.get("extension", []) if e["url"] == WINDOW]
    return {
        sub["url"]: sub.get("valueDateTime", sub.get("valueString", sub.get("valueReference")))
        for sub in found["extension"]
    }
