"""Builders for dosing-session tests: booked dosing sessions, replicated vital signs and
body weights (as outcomes' and intake's events would store them)."""

from __future__ import annotations

from typing import Any

import httpx

from shared.events.envelope import build_event
from shared.fhir.dates import utcnow
from shared.fhir.store import Stored
from tests.booking_support import enrol, start_course
from tests.dosing_support import BASE, DR_ONE
from tests.factories import FHIR_JSON
from tests.replicas import replicate

SESSION_TYPES = f"{BASE}/CodeSystem/session-type"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"


def dosing_session(
    patient_id: str,
    *,
    status: str = "booked",
    start: str = "2026-03-02T09:30:00Z",
    end: str = "2026-03-02T12:30:00Z",
    practitioner: str = DR_ONE,
    code: str = "dosing",
) -> dict[str, Any]:
    return {
        "resourceType": "Appointment",
        "status": status,
        "serviceType": [{"coding": [{"system": SESSION_TYPES, "code": code}]}],
        "start": start,
        "end": end,
        "participant": [
            {"actor": {"reference": f"Patient/{patient_id}"}, "status": "accepted"},
            {"actor": {"reference": practitioner}, "status": "accepted"},
        ],
    }


async def put_session(client: httpx.AsyncClient, session_id: str, body: dict[str, Any]) -> None:
    """Store a dosing session under a known id (updateCreate)."""
    stored = await client.put(
        f"/Appointment/{session_id}", json={**body, "id": session_id}, headers=FHIR_JSON
    )
    assert stored.status_code in (200, 201), stored.text


def weight(patient_id: str, value: float, unit: str = "kg", **extra: Any) -> dict[str, Any]:
    """A body-weight Observation (LOINC 29463-7)."""
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "29463-7"}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": "2026-03-01T09:00:00Z",
        "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
        **extra,
    }


def blood_pressure(patient_id: str, systolic: float, diastolic: float, at: str) -> dict:
    """A blood pressure panel (85354-9) with its systolic and diastolic components."""

    def component(code: str, value: float) -> dict[str, Any]:
        quantity = {"value": value, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"}
        return {"code": {"coding": [{"system": LOINC, "code": code}]}, "valueQuantity": quantity}

    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "85354-9"}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": at,
        "component": [component("8480-6", systolic), component("8462-4", diastolic)],
    }


async def ready(
    client: httpx.AsyncClient,
    *patients: str,
    kg: float | None = 70,
    course: bool = True,
    psychiatrist: str = DR_ONE,
) -> None:
    """Each patient weighs `kg` (None: no weight known), is enrolled, has an agreed IV
    course (unless `course` is False: the test agreed one) and the booked dosing session
    `dosing-<patient>` with `psychiatrist`, or their own when there are several patients."""
    for patient_id in patients:
        if kg is not None:
            replicate(client, "Observation", f"weight-{patient_id}", weight(patient_id, kg))
        if course:
            await start_course(client, patient_id)
        else:
            enrol(client, patient_id)
        who = psychiatrist if len(patients) == 1 else f"Practitioner/dr-{patient_id}"
        await put_session(
            client, f"dosing-{patient_id}", dosing_session(patient_id, practitioner=who)
        )


def observe(client: httpx.AsyncClient, res_id: str, body: dict[str, Any], version: int = 1):
    """Deliver outcomes' event of an Observation to scheduling's consumer handler: the
    replica is written and the reactions run, in one transaction, as from Kafka."""
    app = client._transport.app  # type: ignore[attr-defined]
    meta = {"versionId": str(version), "lastUpdated": "2026-03-02T08:00:00Z"}
    resource = {**body, "id": res_id, "meta": meta}
    method = "POST" if version == 1 else "PUT"
    stored = Stored("Observation", res_id, version, utcnow(), False, resource, method)
    event = build_event(stored, source="urn:kemdr:outcomes", max_data_bytes=1 << 20)
    handler = app.state.events._replica_handler("fhir.Observation")
    with app.state.fhir.database.write() as session:
        handler(session, event)


def heart_rate(patient_id: str, per_minute: float, at: str) -> dict[str, Any]:
    """A heart rate Observation (8867-4)."""
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "8867-4"}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": at,
        "valueQuantity": {"value": per_minute, "unit": "/min", "system": UCUM, "code": "/min"},
    }
