"""Pre-dose blood pressure hold (issue 10): outcomes' reading holds the day's dosing
session, no dose is accepted for it, until a psychiatrist's $release-hold."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import select

from shared.db.models import OutboxRow
from tests.auth_support import bearer
from tests.conftest import BACKENDS
from tests.dosing_support import BASE, DR_ONE, SPRAVATO, clinician, dose
from tests.fhir_asserts import assert_outcome
from tests.holds_support import blood_pressure, dosing_session, observe, put_session, ready
from tests.outbox_rows import RESOURCE_EVENTS

HOLD_CODE = f"{BASE}/CodeSystem/dosing-safety|pre-dose-bp-hold"
HOLD_URL = f"{BASE}/StructureDefinition/dose-hold"
NASAL = {"medication": SPRAVATO, "route": "nasal", "mg": 56}
RELEASE = "/Appointment/dosing-h1/$release-hold"
# 08:50 UTC on the session's day, before its 09:30 start.
BEFORE = "2026-03-02T08:50:00Z"


def reason(text: str = "repeat reading 128/82 after rest") -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": [{"name": "reason", "valueString": text}]}


def _event_types(client: httpx.AsyncClient) -> list[str]:
    """The types of the events written, in order (holds and releases are writes too)."""
    database = client._transport.app.state.fhir.database  # type: ignore[attr-defined]
    with database.read() as session:
        rows = session.execute(select(OutboxRow).where(RESOURCE_EVENTS).order_by(OutboxRow.pk))
        return [row.topic for row in rows.scalars()]


async def _issues(client: httpx.AsyncClient, status: str) -> list[dict[str, Any]]:
    params = {"code": HOLD_CODE, "status": status}
    bundle = (await client.get("/DetectedIssue", params=params)).json()
    return [entry["resource"] for entry in bundle.get("entry", [])]


@BACKENDS
async def test_a_high_reading_holds_the_session_until_a_psychiatrist_releases_it(
    scheduling: httpx.AsyncClient,
):
    await ready(scheduling, "h1")
    observe(scheduling, "bp-1", blood_pressure("h1", 152, 88, BEFORE))
    (issue,) = await _issues(scheduling, "preliminary")
    assert [i["reference"] for i in issue["implicated"]] == [
        "Observation/bp-1",
        "Appointment/dosing-h1",
    ]
    assert "above the hold threshold 140/90 mmHg" in issue["detail"]
    session = (await scheduling.get("/Appointment/dosing-h1")).json()
    assert session["status"] == "booked"
    assert [p["status"] for p in session["participant"]] == ["accepted", "needs-action"]
    assert session["extension"] == [
        {"url": HOLD_URL, "valueReference": {"reference": f"DetectedIssue/{issue['id']}"}}
    ]
    refused = await scheduling.post("/MedicationAdministration", json=dose("h1", **NASAL))
    outcome = assert_outcome(refused, 409, "business-rule")
    assert outcome["expression"] == ["MedicationAdministration.supportingInformation[0]"]
    assert f"on hold (DetectedIssue/{issue['id']}" in outcome["diagnostics"]

    released = await scheduling.post(RELEASE, json=reason(), headers=clinician())
    assert released.status_code == 200, released.text
    assert [p["status"] for p in released.json()["participant"]] == ["accepted", "accepted"]
    assert "extension" not in released.json()
    (final,) = await _issues(scheduling, "final")
    (mitigation,) = final["mitigation"]
    assert mitigation["author"] == {"reference": DR_ONE}
    assert mitigation["action"]["text"] == "Dose hold released: repeat reading 128/82 after rest"
    given = await scheduling.post("/MedicationAdministration", json=dose("h1", **NASAL))
    assert given.status_code == 201, given.text
    topics = [t.rsplit(".", 1)[-1] for t in _event_types(scheduling)]
    # The course agreed, the session stored, held (issue, then session), released (issue,
    # session), the dose.
    assert topics == [
        "CarePlan",
        "Appointment",
        "DetectedIssue",
        "Appointment",
        "DetectedIssue",
        "Appointment",
        "MedicationAdministration",
    ]
    again = await scheduling.post(RELEASE, json=reason(), headers=clinician())
    assert "no dose hold in force" in assert_outcome(again, 409, "conflict")["diagnostics"]


async def test_only_a_practitioner_with_a_reason_releases(scheduling: httpx.AsyncClient):
    await ready(scheduling, "h1")
    observe(scheduling, "bp-1", blood_pressure("h1", 130, 95, BEFORE))
    nurse = bearer(user="PractitionerRole/nurse-1")
    assert_outcome(await scheduling.post(RELEASE, json=reason(), headers=nurse), 403, "forbidden")
    blank = await scheduling.post(RELEASE, json=reason(" "), headers=clinician())
    outcome = assert_outcome(blank, 400, "invalid")
    assert outcome["expression"] == ["Parameters.parameter.where(name='reason').valueString"]
    missing = await scheduling.post(
        "/Appointment/nope/$release-hold", json=reason(), headers=clinician()
    )
    assert_outcome(missing, 404, "not-found")
    assert len(await _issues(scheduling, "preliminary")) == 1


async def test_at_the_threshold_or_another_day_or_after_the_dose_no_hold(
    scheduling: httpx.AsyncClient,
):
    await ready(scheduling, "h1")
    observe(scheduling, "bp-at", blood_pressure("h1", 140, 90, BEFORE))  # not above
    observe(scheduling, "bp-eve", blood_pressure("h1", 170, 100, "2026-03-01T22:00:00Z"))
    given = await scheduling.post("/MedicationAdministration", json=dose("h1", **NASAL))
    assert given.status_code == 201, given.text
    # After the dose: a matter for the rescue thresholds, never a hold.
    observe(scheduling, "bp-after", blood_pressure("h1", 150, 95, "2026-03-02T11:00:00Z"))
    assert await _issues(scheduling, "preliminary") == []
    session = (await scheduling.get("/Appointment/dosing-h1")).json()
    assert {p["status"] for p in session["participant"]} == {"accepted"}


async def test_the_day_is_the_clinics(scheduling: httpx.AsyncClient):
    await ready(scheduling, "h1")
    # 23:30 UTC on 1 March is 00:30 on 2 March in Amsterdam: the session's day.
    observe(scheduling, "bp-night", blood_pressure("h1", 160, 85, "2026-03-01T23:30:00Z"))
    (issue,) = await _issues(scheduling, "preliminary")
    assert issue["implicated"][0] == {"reference": "Observation/bp-night"}


async def test_an_arrived_session_is_held_and_keeps_its_status(scheduling: httpx.AsyncClient):
    await ready(scheduling, "h2")
    await put_session(scheduling, "dosing-h2", dosing_session("h2", status="arrived"))
    observe(scheduling, "bp-in", blood_pressure("h2", 145, 80, BEFORE))
    session = (await scheduling.get("/Appointment/dosing-h2")).json()
    assert session["status"] == "arrived"
    assert session["participant"][1]["status"] == "needs-action"
