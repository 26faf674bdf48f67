"""A programme session's Appointment opens, finishes or cancels its one Encounter."""

from __future__ import annotations

import httpx
import pytest

from tests.auth_support import bearer
from tests.booking_support import start_course
from tests.conftest import BACKENDS
from tests.dosing_support import clinician
from tests.fhir_asserts import assert_outcome
from tests.outbox_rows import events_of
from tests.replanning_support import PAST, created, put, session

PAST_DAY_AFTER = PAST.replace("-02T", "-03T")


async def _encounters(client: httpx.AsyncClient, appointment_id: str) -> list[dict]:
    found = await client.get(
        "/Encounter", params={"appointment": f"Appointment/{appointment_id}"}, headers=clinician()
    )
    assert found.status_code == 200, found.text
    return [entry["resource"] for entry in found.json().get("entry", [])]


@BACKENDS
async def test_arrival_opens_one_encounter_and_fulfilment_finishes_it(
    scheduling: httpx.AsyncClient,
):
    booked = await created(scheduling, session("p1", "emdr", start=PAST), headers=clinician())
    assert await _encounters(scheduling, booked["id"]) == []
    arrived = await put(scheduling, {**booked, "status": "arrived"}, headers=clinician())
    (encounter,) = await _encounters(scheduling, booked["id"])
    assert encounter["status"] == "in-progress"
    assert encounter["class"]["code"] == "AMB"
    assert encounter["subject"] == {"reference": "Patient/p1"}
    assert encounter["appointment"] == [{"reference": f"Appointment/{booked['id']}"}]
    assert encounter["participant"] == [{"individual": {"reference": "Practitioner/dr-1"}}]
    assert encounter["location"] == [{"location": {"reference": "Location/room-1"}}]
    assert encounter["serviceType"] == booked["serviceType"][0]
    assert "start" in encounter["period"] and "end" not in encounter["period"]

    # Written again while arrived (a note added): still the one Encounter.
    noted = await put(scheduling, {**arrived, "comment": "in room 1"}, headers=clinician())
    assert len(await _encounters(scheduling, booked["id"])) == 1
    await put(scheduling, {**noted, "status": "fulfilled"}, headers=clinician())
    (finished,) = await _encounters(scheduling, booked["id"])
    assert finished["id"] == encounter["id"] and finished["status"] == "finished"
    assert finished["period"]["end"] >= finished["period"]["start"]
    kinds = [e["type"] for e in events_of(scheduling, "Encounter")]
    assert kinds == ["fhir.Encounter.created", "fhir.Encounter.updated"]


@pytest.mark.parametrize("ending", ["cancelled", "noshow"])
async def test_a_session_called_off_after_arrival_cancels_its_encounter(
    scheduling: httpx.AsyncClient, ending: str
):
    await start_course(scheduling, "p1")
    arrived = await created(
        scheduling, session("p1", "dosing", start=PAST, status="arrived"), headers=clinician()
    )
    (encounter,) = await _encounters(scheduling, arrived["id"])
    assert encounter["status"] == "in-progress"  # created arrived: opened at once
    await put(scheduling, {**arrived, "status": ending}, headers=clinician())
    (after,) = await _encounters(scheduling, arrived["id"])
    assert after["status"] == "cancelled" and "end" in after["period"]


async def test_no_encounter_without_arrival_or_for_other_appointments(
    scheduling: httpx.AsyncClient,
):
    booked = await created(scheduling, session("p1", "emdr"), headers=clinician())
    await put(scheduling, {**booked, "status": "cancelled"}, headers=clinician())
    assert await _encounters(scheduling, booked["id"]) == []
    other = await created(scheduling, session("p1", None, start=PAST), headers=clinician())
    await put(scheduling, {**other, "status": "arrived"}, headers=clinician())
    assert await _encounters(scheduling, other["id"]) == []
    # Fulfilled with no arrival recorded: the session still gets its (finished) Encounter.
    direct = await created(scheduling, session("p1", "integration", start=PAST_DAY_AFTER))
    await put(scheduling, {**direct, "status": "fulfilled"}, headers=clinician())
    (encounter,) = await _encounters(scheduling, direct["id"])
    assert encounter["status"] == "finished"


async def test_the_service_writes_the_encounter_for_a_caller_who_books_only(
    scheduling: httpx.AsyncClient,
):
    """The Encounter is the service's record of the arrival: a caller allowed to write
    Appointments only still gets it."""
    booked = await created(scheduling, session("p1", "emdr", start=PAST), headers=clinician())
    narrow = bearer(scope="system/Appointment.cruds", user="Practitioner/dr-1")
    await put(scheduling, {**booked, "status": "arrived"}, headers=narrow)
    (encounter,) = await _encounters(scheduling, booked["id"])
    assert encounter["status"] == "in-progress"
    assert (await scheduling.get("/Encounter", headers=narrow)).status_code == 403


async def test_an_arrival_with_no_patient_is_refused_naming_the_participants(
    scheduling: httpx.AsyncClient,
):
    body = session("p1", "emdr", start=PAST)
    body["participant"] = body["participant"][1:]
    booked = await created(scheduling, body, headers=clinician())
    response = await scheduling.put(
        f"/Appointment/{booked['id']}", json={**booked, "status": "arrived"}, headers=clinician()
    )
    issue = assert_outcome(response, 422, "invalid", expression=True)
    assert issue["expression"] == ["Appointment.participant.actor"]
    assert (await scheduling.get(f"/Appointment/{booked['id']}")).json()["status"] == "booked"
    assert await _encounters(scheduling, booked["id"]) == []
