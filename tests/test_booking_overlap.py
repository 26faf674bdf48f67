"""No double-booking of a patient, practitioner or room, the in-session EMDR exception, and
concurrent bookings of one time (issue 10)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

import httpx
import pytest

from tests.auth_support import bearer
from tests.booking_support import at, rule_of, session, start_course
from tests.conftest import BACKENDS
from tests.factories import FHIR_JSON
from tests.finding_support import (
    calendar,
    call,
    ended,
    find,
    free_slot,
    given,
    given_dose,
    proposals,
)
from tests.replicas import replicate
from tests.scheduling_support import created_id, expressions, post
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


# --- review of issue 10: across practices, PractitionerRoles, lapsed holds ------------------

PRACTICE_A = bearer(practice="Organization/a")
PRACTICE_B = bearer(practice="Organization/b")


def _patient_of(practice: str) -> dict:
    return {
        "resourceType": "Patient",
        "managingOrganization": {"reference": f"Organization/{practice}"},
    }


@BACKENDS
@pytest.mark.parametrize(
    ("practitioner", "room", "index"), [("Practitioner/shared", None, 1), (None, ROOM, 1)]
)
async def test_a_practitioner_or_room_shared_by_two_practices_is_not_double_booked(
    scheduling: httpx.AsyncClient, practitioner, room, index
):
    replicate(scheduling, "Patient", "pa", _patient_of("a"))
    replicate(scheduling, "Patient", "pb", _patient_of("b"))
    first = session(None, at(9), at(10), patient="Patient/pa", practitioner=practitioner, room=room)
    created = await scheduling.post("/Appointment", json=first, headers=FHIR_JSON | PRACTICE_A)
    assert created.status_code == 201, created.text
    second = session(
        None, at(9, 30), at(10, 30), patient="Patient/pb", practitioner=practitioner, room=room
    )
    clash = await scheduling.post("/Appointment", json=second, headers=FHIR_JSON | PRACTICE_B)
    assert clash.status_code == 409, clash.text
    assert expressions(clash) == [f"Appointment.participant[{index}].actor"]
    # Practice b learns the time, not whose appointment it is.
    told = rule_of(clash)
    assert "booked elsewhere from 2026-03-02T09:00:00" in told
    assert "to 2026-03-02T10:00:00" in told
    assert created.json()["id"] not in told and "Patient/pa" not in told
    # Practice a, who sees the appointment, is told which one.
    mine = await scheduling.post(
        "/Appointment",
        json=second | {"participant": first["participant"]},
        headers=FHIR_JSON | PRACTICE_A,
    )
    assert mine.status_code == 409 and created.json()["id"] in rule_of(mine)


@BACKENDS
async def test_concurrent_bookings_from_two_practices_leave_one(scheduling: httpx.AsyncClient):
    replicate(scheduling, "Patient", "pa", _patient_of("a"))
    replicate(scheduling, "Patient", "pb", _patient_of("b"))
    bodies = [
        (
            session(None, at(9), at(10), patient=f"Patient/p{p}"),
            bearer(practice=f"Organization/{p}"),
        )
        for p in ("a", "b", "a", "b")
    ]
    responses = await asyncio.gather(
        *(scheduling.post("/Appointment", json=b, headers=FHIR_JSON | h) for b, h in bodies)
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201, 409, 409, 409], [r.text for r in responses]


async def _role(client: httpx.AsyncClient, practitioner: str) -> str:
    body = {
        "resourceType": "PractitionerRole",
        "active": True,
        "practitioner": {"reference": practitioner},
    }
    return f"PractitionerRole/{await created_id(client, body)}"


async def test_a_practitioner_role_cannot_be_double_booked(scheduling: httpx.AsyncClient):
    role = "PractitionerRole/emdr-therapist-1"  # no such role stored: the role itself books
    assert (
        await post(scheduling, session(None, at(9), at(10), practitioner=role))
    ).status_code == 201
    clash = await post(
        scheduling, session(None, at(9, 30), at(10, 30), patient="Patient/p2", practitioner=role)
    )
    assert clash.status_code == 409, clash.text
    assert expressions(clash) == ["Appointment.participant[1].actor"]


@pytest.mark.parametrize("first_as_role", [True, False])
async def test_a_practitioner_is_one_person_in_all_their_roles(
    scheduling: httpx.AsyncClient, first_as_role
):
    role = await _role(scheduling, "Practitioner/dr-1")
    other_role = await _role(scheduling, "Practitioner/dr-1")
    first = session(
        None, at(9), at(10), practitioner=role if first_as_role else "Practitioner/dr-1"
    )
    assert (await post(scheduling, first)).status_code == 201
    for practitioner in (role, other_role, "Practitioner/dr-1"):
        body = session(None, at(9, 30), at(10, 30), patient="Patient/p2", practitioner=practitioner)
        clash = await post(scheduling, body)
        assert clash.status_code == 409, (practitioner, clash.text)
        assert "Practitioner/dr-1 is booked" in rule_of(clash)
    # Another practitioner's role is free then.
    elsewhere = await _role(scheduling, "Practitioner/dr-2")
    body = session(None, at(9, 30), at(10, 30), patient="Patient/p2", practitioner=elsewhere)
    assert (await post(scheduling, body)).status_code == 201


@BACKENDS
async def test_concurrent_bookings_by_role_and_by_practitioner_leave_one(
    scheduling: httpx.AsyncClient,
):
    role = await _role(scheduling, "Practitioner/dr-1")
    bodies = [
        session(
            None,
            at(9, minute),
            at(10, minute),
            patient=f"Patient/c{minute}",
            practitioner=role if minute % 2 else "Practitioner/dr-1",
        )
        for minute in range(0, 24, 3)
    ]
    responses = await asyncio.gather(
        *(scheduling.post("/Appointment", json=b, headers=FHIR_JSON) for b in bodies)
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * (len(bodies) - 1), [r.text for r in responses]


@BACKENDS
async def test_a_lapsed_hold_does_not_block_a_direct_booking(
    service_client: Callable[..., httpx.AsyncClient],
):
    async with service_client("scheduling", hold_minutes=0) as scheduling:
        end = ended()
        await given_dose(scheduling, "p1", end)
        schedule_id = await calendar(scheduling, "Practitioner/dr-emdr", "emdr")
        await free_slot(scheduling, schedule_id, end + timedelta(hours=30))
        (mine,) = await proposals(scheduling, find("Patient/p1"))
        held = (await call(scheduling, "hold", given(mine))).json()
        assert held["status"] == "pending"
        # The EHR books p1 directly at that time with another therapist.
        other = session("emdr", mine["start"], mine["end"], practitioner="Practitioner/dr-other")
        booked = await post(scheduling, other)
        assert booked.status_code == 201, booked.text


async def test_a_hold_that_has_not_lapsed_blocks_a_direct_booking(scheduling: httpx.AsyncClient):
    end = ended()
    await given_dose(scheduling, "p1", end)
    schedule_id = await calendar(scheduling, "Practitioner/dr-emdr", "emdr")
    await free_slot(scheduling, schedule_id, end + timedelta(hours=30))
    (mine,) = await proposals(scheduling, find("Patient/p1"))
    assert (await call(scheduling, "hold", given(mine))).status_code == 201
    other = session("emdr", mine["start"], mine["end"], practitioner="Practitioner/dr-other")
    refused = await post(scheduling, other)
    assert refused.status_code == 409 and "Patient/p1" in rule_of(refused)
