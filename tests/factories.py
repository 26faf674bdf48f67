"""Small builders of valid FHIR resources for tests."""

from __future__ import annotations

from typing import Any

FHIR_JSON = {"Content-Type": "application/fhir+json"}


def patient(family: str = "Chalmers", given: str = "Peter", **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "name": [{"family": family, "given": [given]}],
        "gender": "male",
        "birthDate": "1974-12-25",
        **extra,
    }


def observation(
    patient_id: str = "p1",
    code: str = "44261-6",
    value: float = 12,
    when: str = "2026-03-01T10:00:00Z",
    **extra: Any,
) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "survey",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": when,
        "valueQuantity": {
            "value": value,
            "unit": "{score}",
            "system": "http://unitsofmeasure.org",
            "code": "{score}",
        },
        **extra,
    }


def appointment(patient_id: str = "p1", start: str = "2026-03-02T09:00:00Z") -> dict[str, Any]:
    return {
        "resourceType": "Appointment",
        "status": "booked",
        "start": start,
        "end": start.replace("09:00", "10:00"),
        "participant": [
            {"actor": {"reference": f"Patient/{patient_id}"}, "status": "accepted"},
            {"actor": {"reference": "Practitioner/dr1"}, "status": "accepted"},
        ],
    }


def medication_administration(patient_id: str = "p1") -> dict[str, Any]:
    return {
        "resourceType": "MedicationAdministration",
        "status": "completed",
        "medicationCodeableConcept": {
            "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "6130"}]
        },
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": "2026-03-01T09:00:00Z",
    }
