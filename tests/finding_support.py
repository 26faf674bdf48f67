"""Builders for the `$find` / `$hold` / `$book` and EMDR window tests: a patient with a
recent completed dose (an open window), practitioners' and rooms' schedules and slots."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from services.scheduling.finding import hold_expires_url, window_override_url
from services.scheduling.replanning.sessions import opened_by_dose_url
from tests.booking_support import start_course
from tests.dosing_support import BASE, clinician, dose
from tests.factories import FHIR_JSON
from tests.holds_support import dosing_session, put_session, replicate, weight
from tests.scheduling_support import created_id, schedule, session_type, slot

OPENED_BY = opened_by_dose_url(BASE)
HOLD_EXPIRES = hold_expires_url(BASE)
OVERRIDE = window_override_url(BASE)
# iv-racemic's window in hours from the end of the dose (the protocol file's shared window).
WINDOW_START, OPTIMAL_START, OPTIMAL_END, WINDOW_END = 2, 24, 72, 168


def fhir(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def ended() -> datetime:
    """When the test's dose ended: three hours ago, on the hour."""
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    return now - timedelta(hours=3)


async def given_dose(client: httpx.AsyncClient, patient_id: str, end: datetime) -> str:
    """Enrol the patient on iv-racemic and record a completed dose ending at `end`; its id."""
    await start_course(client, patient_id)
    replicate(client, "Observation", f"weight-{patient_id}", weight(patient_id, 70))
    booked = dosing_session(
        patient_id,
        start=fhir(end - timedelta(minutes=40)),
        end=fhir(end + timedelta(hours=2)),
        practitioner=f"Practitioner/doser-{patient_id}",
    )
    await put_session(client, f"dosing-{patient_id}", booked)
    body = dose(patient_id)
    body["effectivePeriod"] = {"start": fhir(end - timedelta(minutes=40)), "end": fhir(end)}
    created = await client.post("/MedicationAdministration", json=body, headers=clinician())
    assert created.status_code == 201, created.text
    return created.json()["id"]


async def calendar(client: httpx.AsyncClient, actor: str, *types: str) -> str:
    """An active Schedule of `actor` offering `types`; its id."""
    return await created_id(client, schedule(actor, *types))


async def free_slot(client: httpx.AsyncClient, schedule_id: str, start: datetime) -> str:
    """A free half-hour Slot of the schedule from `start`; its id."""
    body = slot(schedule_id, fhir(start), fhir(start + timedelta(minutes=30)))
    return await created_id(client, body)


def find(patient: str, kind: str = "emdr", **extra: Any) -> dict[str, Any]:
    """The Parameters of a `$find` (extra: start/end as datetimes, practitioner, _count)."""
    parameter: list[dict[str, Any]] = [
        {"name": "patient", "valueReference": {"reference": patient}},
        {"name": "service-type", "valueCodeableConcept": session_type(kind)},
    ]
    for name, value in extra.items():
        if name in ("start", "end"):
            parameter.append({"name": name, "valueDateTime": fhir(value)})
        elif name == "practitioner":
            parameter.append({"name": name, "valueReference": {"reference": value}})
        else:
            parameter.append({"name": name, "valueInteger": value})
    return {"resourceType": "Parameters", "parameter": parameter}


async def call(client: httpx.AsyncClient, operation: str, body: dict) -> httpx.Response:
    return await client.post(f"/Appointment/${operation}", json=body, headers=FHIR_JSON)


async def proposals(client: httpx.AsyncClient, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The proposed Appointments a `$find` returns."""
    response = await call(client, "find", body)
    assert response.status_code == 200, response.text
    bundle = response.json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    return [entry["resource"] for entry in bundle.get("entry", [])]


def given(appointment: dict[str, Any]) -> dict[str, Any]:
    """The Parameters of `$hold` / `$book` of one appointment."""
    return {
        "resourceType": "Parameters",
        "parameter": [{"name": "appointment", "resource": appointment}],
    }


def opened(appointment: dict[str, Any]) -> dict[str, Any]:
    """The opened-by-dose sub-extensions' values by name."""
    (found,) = [e for e in appointment.get("extension", []) if e["url"] == OPENED_BY]
    return {s["url"]: s.get("valueReference", s.get("valueDecimal")) for s in found["extension"]}


def slots_of(appointment: dict[str, Any]) -> list[str]:
    return [s["reference"] for s in appointment.get("slot", [])]


def actors_of(appointment: dict[str, Any]) -> list[str]:
    return [p["actor"]["reference"] for p in appointment["participant"]]
