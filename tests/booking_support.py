"""Builders for the booking tests: programme sessions, enrolment replicas and courses."""

from __future__ import annotations

from typing import Any

import httpx

from tests.dosing_support import care_plan, clinician
from tests.factories import FHIR_JSON
from tests.replicas import replicate
from tests.scheduling_support import session_type

DAY = "2026-03-02"
# The tests' courses begin before their first sessions (dated from DAY on, before the plans
# are written): a plan without period.start would begin when written, leaving them out.
COURSE_START = "2026-03-01"


def at(hour: int, minute: int = 0, day: str = DAY) -> str:
    return f"{day}T{hour:02d}:{minute:02d}:00Z"


def session(
    kind: str | None,
    start: str,
    end: str,
    *,
    patient: str | None = "Patient/p1",
    practitioner: str | None = "Practitioner/dr-1",
    room: str | None = None,
    status: str = "booked",
    slot: str | None = None,
) -> dict[str, Any]:
    """An Appointment of session type `kind` (None: no session type) with its participants."""
    actors = [a for a in (patient, practitioner, room) if a]
    body: dict[str, Any] = {
        "resourceType": "Appointment",
        "status": status,
        "start": start,
        "end": end,
        "participant": [{"actor": {"reference": a}, "status": "accepted"} for a in actors],
    }
    if kind is not None:
        body["serviceType"] = [session_type(kind)]
    if slot is not None:
        body["slot"] = [{"reference": f"Slot/{slot}"}]
    return body


def enrol(client: httpx.AsyncClient, patient_id: str, status: str = "active") -> None:
    episode = {
        "resourceType": "EpisodeOfCare",
        "status": status,
        "patient": {"reference": f"Patient/{patient_id}"},
    }
    replicate(client, "EpisodeOfCare", f"ep-{patient_id}", episode)


async def start_course(
    client: httpx.AsyncClient, patient_id: str, protocol: str = "iv-racemic", *, enrolled=False
) -> str:
    """Enrol the patient (unless `enrolled`) and agree their dosing course (a CarePlan)."""
    if not enrolled:
        enrol(client, patient_id)
    body = care_plan(patient_id, protocol) | {"period": {"start": COURSE_START}}
    created = await client.post("/CarePlan", json=body, headers=FHIR_JSON | clinician())
    assert created.status_code == 201, created.text
    return created.json()["id"]


def rule_of(response: httpx.Response) -> str:
    """The diagnostics of the OperationOutcome's first issue (it names the rule)."""
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome", outcome
    return outcome["issue"][0]["diagnostics"]
