"""Observations of the measures outcomes knows (services/outcomes/measures/measures.json)."""

from __future__ import annotations

from typing import Any

import httpx

from tests.factories import patient
from tests.holds_support import blood_pressure
from tests.replicas import replicate

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
BASE = "https://fhir.example.org/kemdr"  # the settings' default canonical base
LOCAL = f"{BASE}/CodeSystem/outcome-measure"


def known_patient(client: httpx.AsyncClient, patient_id: str = "p1") -> str:
    """Put a Patient into the service's replica, as intake's event would; returns its id."""
    replicate(client, "Patient", patient_id, patient())
    return patient_id


def score(code: str, value: Any, *, system: str = LOINC, subject: str = "p1", **extra: Any):
    """An Observation of a score as valueInteger."""
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": system, "code": code}]},
        "subject": {"reference": f"Patient/{subject}"},
        "effectiveDateTime": "2026-03-01T10:00:00Z",
        "valueInteger": value,
        **extra,
    }


def quantity(value: Any, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


def vital(code: str, value: Any, unit: str, *, subject: str = "p1", **extra: Any):
    """An Observation of a vital sign as a UCUM valueQuantity."""
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": f"Patient/{subject}"},
        "effectiveDateTime": "2026-03-01T10:00:00Z",
        "valueQuantity": quantity(value, unit),
        **extra,
    }


def bp_panel(systolic: Any = 120, diastolic: Any = 80, *, subject: str = "p1", **extra: Any):
    """A blood pressure panel with its two components (holds_support's, at a fixed time)."""
    return {**blood_pressure(subject, systolic, diastolic, "2026-03-01T10:00:00Z"), **extra}
