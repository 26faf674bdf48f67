"""Builders for re-planning tests: programme sessions, replicated episodes and consents."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx

from services.scheduling.finding import window_override_url
from services.scheduling.replanning.sessions import opened_by_extension
from services.scheduling.session_types import session_type_system
from shared.events.envelope import ResourceEvent, build_event
from shared.fhir.dates import utcnow
from shared.fhir.store import Stored
from tests.dosing_support import BASE

FUTURE, PAST = "2999-03-02T09:00:00Z", "2001-03-02T09:00:00Z"
# Later future days, for a patient's other sessions.
LATER = ("2999-03-03T09:00:00Z", "2999-03-04T09:00:00Z", "2999-03-05T09:00:00Z")
CONSENT_SCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"


def session(
    patient_id: str,
    code: str | None,
    *,
    start: str = FUTURE,
    status: str = "booked",
    dose: str | None = None,
    practitioner: str = "Practitioner/dr-1",
    room: str = "Location/room-1",
    override: str | None = None,
) -> dict[str, Any]:
    """An Appointment of a programme session (`code` None: not one), opened by `dose`; a
    dosing session lasts 3 h (dose and observation), others 1 h. `override`: why an EMDR
    session may lie outside its dose's window."""
    begins = datetime.fromisoformat(start.replace("Z", "+00:00"))
    ends = begins + timedelta(hours=3 if code == "dosing" else 1)
    body: dict[str, Any] = {
        "resourceType": "Appointment",
        "status": status,
        "start": start,
        "end": ends.isoformat().replace("+00:00", "Z"),
        "participant": [
            {"actor": {"reference": f"Patient/{patient_id}"}, "status": "accepted"},
            {"actor": {"reference": practitioner}, "status": "accepted"},
            {"actor": {"reference": room}, "status": "accepted"},
        ],
    }
    if code is not None:
        coding = {"system": session_type_system(BASE), "code": code}
        body["serviceType"] = [{"coding": [coding]}]
    extensions = []
    if dose is not None:
        extensions.append(opened_by_extension(BASE, dose, 24))
    if override is not None:
        extensions.append({"url": window_override_url(BASE), "valueString": override})
    if extensions:
        body["extension"] = extensions
    return body


def in_window(day: int) -> str:
    """9:00 on a day of March 2026, inside the window of the test doses ended on the 2nd
    (from 12:40 on the 2nd to the 9th)."""
    return f"2026-03-{day:02d}T09:00:00Z"


def episode(patient_id: str, status: str) -> dict[str, Any]:
    return {
        "resourceType": "EpisodeOfCare",
        "status": status,
        "patient": {"reference": f"Patient/{patient_id}"},
    }


def consent(patient_id: str, status: str = "active", provision: str = "permit") -> dict:
    return {
        "resourceType": "Consent",
        "status": status,
        "scope": {"coding": [{"system": CONSENT_SCOPE, "code": "treatment"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": f"Patient/{patient_id}"},
        "provision": {"type": provision},
    }


def replica_event(
    res_type: str, res_id: str, version: int, resource: dict[str, Any] | None
) -> ResourceEvent:
    """The owner's event of one version (None: deleted), as the consumer receives it."""
    content = None
    if resource is not None:
        meta = {"versionId": str(version), "lastUpdated": "2026-11-30T10:00:00Z"}
        content = {**resource, "id": res_id, "meta": meta}
    stored = Stored(res_type, res_id, version, utcnow(), resource is None, content, "PUT")
    return build_event(stored, source="urn:intake", max_data_bytes=1 << 20)


async def created(client: httpx.AsyncClient, body: dict[str, Any], **kwargs: Any) -> dict:
    response = await client.post(f"/{body['resourceType']}", json=body, **kwargs)
    assert response.status_code == 201, response.text
    return response.json()


async def put(client: httpx.AsyncClient, body: dict[str, Any], **kwargs: Any) -> dict:
    path = f"/{body['resourceType']}/{body['id']}"
    response = await client.put(path, json=body, **kwargs)
    assert response.status_code == 200, response.text
    return response.json()
