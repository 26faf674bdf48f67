"""No double-booking of a patient, practitioner or room, the in-session EMDR exception, and
concurrent bookings of one time (issue 10)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.booking_support import at, rule_of, session, start_course
from tests.conftest import BACKENDS
from tests.factories import FHIR_JSON
from tests.scheduling_support import expressions, post
from tests.search_helpers import search

ROOM = "Location/room-1"


@BACKENDS
@pytest.mark.parametrize(
    ("patient", "practitioner", "room", "index"),
    [
        ("Patient/p1", "Practitioner/dr-2", None, 0),
        ("Patient/p2", "Practitioner/dr-1", None, 1),
        ("Patient/p2", "Practitioner/dr-2", ROOM, 2),
    ],
)
async def test_a_participant_is_in_one_session_at_a_time(
    scheduling: httpx.AsyncClient, patient, practitioner, room, index
):
    first = await post(scheduling, session("emdr", at(9), at(10), room=ROOM))
    assert first.status_code == 201, first.text
    body = session(
        "integration", at(9, 30), at(10, 30), patient=patient, practitioner=practitioner, room=room
    )
    refused = await post(scheduling, body)
    assert refused.status_code == 409, refused.text
    assert "no-double-booking" in rule_of(refused) and first.json()["id"] in rule_of(refused)
    assert expressions(refused) == [f"Appointment.participant[{index}].actor"]
    # Back to back is no overlap, and a proposal holds no time.
    assert (await post(scheduling, body | {"start": at(10), "end": at(11)})).status_code == 201
    assert (await post(scheduling, body | {"status": "proposed"})).status_code == 201


async def test_every_booked_appointment_keeps_to_the_rule(scheduling: httpx.AsyncClient):
    untyped = session(None, at(9), at(10))
    assert (await post(scheduling, untyped)).status_code == 201
    other = session(None, at(9), at(10), patient="Patient/p2")
    refused = await post(scheduling, other)
    assert refused.status_code == 409 and "Practitioner/dr-1" in rule_of(refused)


async def test_a_cancelled_session_frees_its_time(scheduling: httpx.AsyncClient):
    first = (await post(scheduling, session("emdr", at(9), at(10)))).json()
    moved = first | {"status": "cancelled"}
    assert (await scheduling.put(f"/Appointment/{first['id']}", json=moved)).status_code == 200
    assert (await post(scheduling, session("emdr", at(9), at(10)))).status_code == 201
    # Rebooking the cancelled one clashes now.
    again = await scheduling.put(f"/Appointment/{first['id']}", json=first | {"meta": {}})
    assert again.status_code == 409, again.text


@BACKENDS
async def test_emdr_in_session_books_inside_the_dosing_session(scheduling: httpx.AsyncClient):
    await start_course(scheduling, "p1", "sublingual-emdr-in-session")
    dose = session("dosing", at(9), at(12), practitioner="Practitioner/nurse", room=ROOM)
    assert (await post(scheduling, dose)).status_code == 201
    emdr = session("emdr", at(9, 30), at(11), room=ROOM)
    assert (await post(scheduling, emdr)).status_code == 201
    # The EMDR therapist must still be free, and the session must lie inside the dose.
    busy = session("emdr", at(9, 30), at(11), practitioner="Practitioner/nurse", room=ROOM)
    assert (await post(scheduling, busy)).status_code == 409
    outside = session("emdr", at(11, 30), at(12, 30), practitioner="Practitioner/dr-3")
    refused = await post(scheduling, outside)
    assert refused.status_code == 409 and "Patient/p1" in rule_of(refused)


async def test_other_protocols_get_no_in_session_exception(scheduling: httpx.AsyncClient):
    await start_course(scheduling, "p1", "sublingual-racemic")
    dose = session("dosing", at(9), at(12), practitioner="Practitioner/nurse")
    assert (await post(scheduling, dose)).status_code == 201
    refused = await post(scheduling, session("emdr", at(9, 30), at(11)))
    assert refused.status_code == 409 and "Patient/p1" in rule_of(refused)


@BACKENDS
async def test_concurrent_bookings_of_one_time_leave_one(scheduling: httpx.AsyncClient):
    # Each names the same practitioner, in its own room, for a different patient.
    bodies = [
        session(
            "emdr",
            at(9, minute),
            at(10, minute),
            patient=f"Patient/c{minute}",
            room=f"Location/r{minute}",
        )
        for minute in range(0, 30, 3)
    ]
    responses = await asyncio.gather(
        *(scheduling.post("/Appointment", json=b, headers=FHIR_JSON) for b in bodies)
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * (len(bodies) - 1), [r.text for r in responses]
    bundle = await search(scheduling, "/Appointment", {"actor": "Practitioner/dr-1"})
    assert bundle["total"] == 1
