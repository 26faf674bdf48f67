"""A small generated cohort at outcomes: patients of two practices, doses with their windows,
EMDR sessions and encounters (replicas, as scheduling's events would bring them) and scores
(Observations posted to outcomes in transaction Bundles)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx

from services.scheduling.replanning.sessions import opened_by_extension
from tests.dosing_support import INJECTION, ROUTES, SNOMED, WINDOW
from tests.measures_support import BASE, LOCAL, LOINC
from tests.replanning_support import session
from tests.replicas import replicate

T0 = datetime(2026, 1, 5, 9, 0)
# measures.json key -> (system, code) of the score Observations.
CODES = {
    "phq9-total": (LOINC, "44261-6"),
    "pcl5-total": (LOINC, "101698-9"),
    "madrs-total": (LOCAL, "madrs-total"),
    "gad7-total": (LOINC, "70274-6"),
    "suds": (LOCAL, "suds"),
}
DOSE_MINUTES = 40


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Cohort:
    """What was loaded, for the tests' independent computations."""

    # patient -> practice id
    practices: dict[str, str] = field(default_factory=dict)
    # dose id -> (patient, start, route key, protocol)
    doses: dict[str, tuple[str, datetime, str, str]] = field(default_factory=dict)
    # (patient, measure) -> [(time, value)]
    scores: dict[tuple[str, str], list[tuple[datetime, float]]] = field(default_factory=dict)
    # appointment id -> (patient, start, took place, inside the optimal window)
    sessions: dict[str, tuple[str, datetime, bool, bool]] = field(default_factory=dict)
    observations: list[dict[str, Any]] = field(default_factory=list)

    def patient(self, client: httpx.AsyncClient, patient_id: str, practice: str) -> None:
        body = {
            "resourceType": "Patient",
            "name": [{"family": f"Generated {patient_id}"}],
            "managingOrganization": {"reference": f"Organization/{practice}"},
        }
        replicate(client, "Patient", patient_id, body)
        self.practices[patient_id] = practice

    def dose(
        self,
        client: httpx.AsyncClient,
        dose_id: str,
        patient_id: str,
        start: datetime,
        *,
        route: str = "iv",
        protocol: str = "iv-racemic",
    ) -> datetime:
        """A completed dose with its stamped window (optimal 24-72 h after it ended)."""
        ended = start + timedelta(minutes=DOSE_MINUTES)
        window = [
            ("windowStart", ended + timedelta(hours=2)),
            ("optimalStart", ended + timedelta(hours=24)),
            ("optimalEnd", ended + timedelta(hours=72)),
            ("windowEnd", ended + timedelta(hours=168)),
        ]
        body = {
            "resourceType": "MedicationAdministration",
            "status": "completed",
            "medicationCodeableConcept": {"coding": [INJECTION]},
            "subject": {"reference": f"Patient/{patient_id}"},
            "effectivePeriod": {"start": iso(start), "end": iso(ended)},
            "dosage": {"route": {"coding": [{"system": SNOMED, "code": ROUTES[route]}]}},
            "extension": [
                {
                    "url": WINDOW,
                    "extension": [
                        *({"url": name, "valueDateTime": iso(when)} for name, when in window),
                        {"url": "protocol", "valueString": f"{protocol}|1.0.0"},
                    ],
                }
            ],
        }
        replicate(client, "MedicationAdministration", dose_id, body)
        self.doses[dose_id] = (patient_id, start, route, protocol)
        return ended

    def emdr(
        self,
        client: httpx.AsyncClient,
        appointment_id: str,
        patient_id: str,
        dose_id: str,
        offset_hours: float,
        *,
        status: str = "fulfilled",
        encounter: str | None = None,
    ) -> tuple[datetime, datetime]:
        """An EMDR session `offset_hours` after the dose ended; `encounter` its state."""
        ended = self.doses[dose_id][1] + timedelta(minutes=DOSE_MINUTES)
        start = ended + timedelta(hours=offset_hours)
        body = session(patient_id, "emdr", start=iso(start), status=status)
        reference = f"MedicationAdministration/{dose_id}"
        body["extension"] = [opened_by_extension(BASE, reference, offset_hours)]
        replicate(client, "Appointment", appointment_id, body)
        took_place = status == "fulfilled" or encounter == "finished"
        self.sessions[appointment_id] = (patient_id, start, took_place, 24 <= offset_hours <= 72)
        end = start + timedelta(hours=1)
        if encounter is not None:
            body = _encounter(patient_id, appointment_id, start, end, encounter)
            replicate(client, "Encounter", f"e-{appointment_id}", body)
        return start, end

    def score(
        self,
        patient_id: str,
        measure: str,
        value: float,
        when: datetime,
        *,
        encounter: str | None = None,
    ) -> None:
        """A score to post (see `post_scores`)."""
        system, code = CODES[measure]
        body: dict[str, Any] = {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": system, "code": code}]},
            "subject": {"reference": f"Patient/{patient_id}"},
            "effectiveDateTime": iso(when),
            "valueInteger": int(value),
        }
        if encounter is not None:
            body["encounter"] = {"reference": f"Encounter/{encounter}"}
        self.observations.append(body)
        self.scores.setdefault((patient_id, measure), []).append((when, float(int(value))))

    async def post_scores(self, client: httpx.AsyncClient) -> None:
        """Post the scores through the API, a transaction Bundle of up to 200 at a time."""
        pending, self.observations = self.observations, []
        for at in range(0, len(pending), 200):
            entries = [
                {"resource": body, "request": {"method": "POST", "url": "Observation"}}
                for body in pending[at : at + 200]
            ]
            bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
            response = await client.post("", json=bundle)
            assert response.status_code == 200, response.text


def _encounter(
    patient_id: str, appointment_id: str, start: datetime, end: datetime, status: str
) -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "status": status,
        "class": {"code": "AMB"},
        "subject": {"reference": f"Patient/{patient_id}"},
        "appointment": [{"reference": f"Appointment/{appointment_id}"}],
        "period": {"start": iso(start), "end": iso(end)},
    }


def part(parameter: dict[str, Any], name: str) -> Any:
    """The value of a part (None when absent)."""
    for found in parameter.get("part", []):
        if found["name"] == name:
            return next(v for k, v in found.items() if k.startswith("value"))
    return None


def parts(parameter: dict[str, Any], name: str) -> list[Any]:
    return [
        next(v for k, v in p.items() if k.startswith("value"))
        for p in parameter.get("part", [])
        if p["name"] == name
    ]


def top(parameters: dict[str, Any], name: str) -> Any:
    """The value of a top-level parameter (None when absent)."""
    for found in parameters["parameter"]:
        if found["name"] == name:
            return next(v for k, v in found.items() if k.startswith("value"))
    return None


def by_instrument(parameters: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The `measure` parameters by their instrument code."""
    return {
        part(p, "instrument")["code"]: p for p in parameters["parameter"] if p["name"] == "measure"
    }
