"""An Appointment books a free Slot it fits in (busy), and gives it back when cancelled or
deleted (free), each change of the Slot an update of its own (issue 10)."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from sqlalchemy import select

from shared.db.models import OutboxRow
from tests.booking_support import at, rule_of, session
from tests.conftest import BACKENDS
from tests.factories import FHIR_JSON
from tests.scheduling_support import created_id, expressions, post, schedule, slot


async def _slot(client: httpx.AsyncClient, start: str = at(9), end: str = at(10)) -> str:
    schedule_id = await created_id(client, schedule("Practitioner/dr-1", "emdr"))
    return await created_id(client, slot(schedule_id, start, end))


def _slot_events(client: httpx.AsyncClient) -> list[str]:
    """The event types of the Slot changes in the outbox, oldest first."""
    database = client._transport.app.state.fhir.database  # type: ignore[attr-defined]
    with database.read() as session:
        rows = session.execute(select(OutboxRow).order_by(OutboxRow.pk)).scalars()
        return [row.event_type for row in rows if ".Slot." in row.event_type]


async def _slot_state(client: httpx.AsyncClient, slot_id: str) -> tuple[str, str]:
    read = (await client.get(f"/Slot/{slot_id}")).json()
    return read["status"], read["meta"]["versionId"]


@BACKENDS
async def test_booking_marks_the_slot_busy_and_cancelling_frees_it(scheduling):
    slot_id = await _slot(scheduling)
    booked = await post(scheduling, session("emdr", at(9), at(10), slot=slot_id))
    assert booked.status_code == 201, booked.text
    assert await _slot_state(scheduling, slot_id) == ("busy", "2")
    taken = await post(
        scheduling,
        session(
            "emdr",
            at(9),
            at(10),
            patient="Patient/p2",
            practitioner="Practitioner/dr-1",
            slot=slot_id,
        ),
    )
    assert taken.status_code == 409, taken.text
    assert "slot-must-be-free" in rule_of(taken)
    assert expressions(taken) == ["Appointment.slot[0]"]
    appointment = booked.json()
    cancelled = appointment | {"status": "cancelled"}
    put = await scheduling.put(f"/Appointment/{appointment['id']}", json=cancelled)
    assert put.status_code == 200, put.text
    assert await _slot_state(scheduling, slot_id) == ("free", "3")
    rebooked = await post(
        scheduling,
        session(
            "emdr",
            at(9),
            at(10),
            patient="Patient/p2",
            practitioner="Practitioner/dr-1",
            slot=slot_id,
        ),
    )
    assert rebooked.status_code == 201, rebooked.text
    assert await _slot_state(scheduling, slot_id) == ("busy", "4")
    # Deleting the appointment gives the slot back too.
    assert (await scheduling.delete(f"/Appointment/{rebooked.json()['id']}")).status_code == 204
    assert await _slot_state(scheduling, slot_id) == ("free", "5")
    # Each change of the slot is an update with its own event.
    assert _slot_events(scheduling) == ["fhir.Slot.created"] + ["fhir.Slot.updated"] * 4


async def test_a_slot_update_of_the_booking_keeps_the_slot(scheduling: httpx.AsyncClient):
    slot_id = await _slot(scheduling)
    booked = (await post(scheduling, session("emdr", at(9), at(10), slot=slot_id))).json()
    arrived = booked | {"status": "arrived"}
    assert (await scheduling.put(f"/Appointment/{booked['id']}", json=arrived)).status_code == 200
    assert await _slot_state(scheduling, slot_id) == ("busy", "2")


async def test_an_appointment_fits_in_its_slot(scheduling: httpx.AsyncClient):
    slot_id = await _slot(scheduling)
    refused = await post(scheduling, session("emdr", at(9), at(10, 30), slot=slot_id))
    assert refused.status_code == 422, refused.text
    assert expressions(refused) == ["Appointment.slot"]
    unknown = await post(scheduling, session("emdr", at(9), at(10), slot="nope"))
    assert unknown.status_code == 422 and expressions(unknown) == ["Appointment.slot[0]"]
    # A refused booking leaves the slot as it was.
    assert await _slot_state(scheduling, slot_id) == ("free", "1")


async def test_a_failed_rule_leaves_the_slot_free(scheduling: httpx.AsyncClient):
    slot_id = await _slot(scheduling)
    assert (await post(scheduling, session("emdr", at(9), at(10)))).status_code == 201
    clash = await post(
        scheduling, session("emdr", at(9), at(10), patient="Patient/p2", slot=slot_id)
    )
    assert clash.status_code == 409 and "no-double-booking" in rule_of(clash)
    assert await _slot_state(scheduling, slot_id) == ("free", "1")


@BACKENDS
async def test_concurrent_bookings_of_one_slot_leave_one(scheduling: httpx.AsyncClient):
    # A Schedule of eight practitioners (each may take its slot) and nobody in common but
    # the slot: only the slot rule can tell them apart.
    body = schedule("Practitioner/d0", "emdr")
    body["actor"] = [{"reference": f"Practitioner/d{n}"} for n in range(8)]
    schedule_id = await created_id(scheduling, body)
    slot_id = await created_id(scheduling, slot(schedule_id, at(9), at(10)))
    bodies = [
        session(
            "emdr",
            at(9),
            at(10),
            patient=f"Patient/c{n}",
            practitioner=f"Practitioner/d{n}",
            slot=slot_id,
        )
        for n in range(8)
    ]
    responses = await asyncio.gather(
        *(scheduling.post("/Appointment", json=b, headers=FHIR_JSON) for b in bodies)
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * (len(bodies) - 1), [r.text for r in responses]
    assert await _slot_state(scheduling, slot_id) == ("busy", "2")


async def test_an_appointment_cannot_take_another_practitioner_s_slot(scheduling):
    theirs = await created_id(scheduling, schedule("Practitioner/dr-b", "emdr"))
    slot_id = await created_id(scheduling, slot(theirs, at(9), at(10)))
    mine = session("emdr", at(9), at(10), practitioner="Practitioner/dr-a", slot=slot_id)
    taken = await post(scheduling, mine)
    assert taken.status_code == 422, taken.text
    assert expressions(taken) == ["Appointment.slot[0]"]
    assert await _slot_state(scheduling, slot_id) == ("free", "1")
    # dr-b may book it; a participant who declined does not count.
    declined = session("emdr", at(9), at(10), practitioner="Practitioner/dr-a", slot=slot_id)
    declined["participant"].append(
        {"actor": {"reference": "Practitioner/dr-b"}, "status": "declined"}
    )
    assert (await post(scheduling, declined)).status_code == 422
    theirs_booked = session("emdr", at(9), at(10), practitioner="Practitioner/dr-b", slot=slot_id)
    assert (await post(scheduling, theirs_booked)).status_code == 201


async def _role(client: httpx.AsyncClient, practitioner: str) -> str:
    body = {
        "resourceType": "PractitionerRole",
        "active": True,
        "practitioner": {"reference": practitioner},
    }
    return f"PractitionerRole/{await created_id(client, body)}"


@pytest.mark.parametrize("schedule_of_role", [True, False])
async def test_a_practitioner_role_s_slot_is_its_practitioner_s(scheduling, schedule_of_role):
    role = await _role(scheduling, "Practitioner/dr-1")
    owner, participant = (
        (role, "Practitioner/dr-1") if schedule_of_role else ("Practitioner/dr-1", role)
    )
    schedule_id = await created_id(scheduling, schedule(owner, "emdr"))
    slot_id = await created_id(scheduling, slot(schedule_id, at(9), at(10)))
    other_id = await created_id(scheduling, slot(schedule_id, at(10), at(11)))
    booked = await post(
        scheduling, session("emdr", at(9), at(10), practitioner=participant, slot=slot_id)
    )
    assert booked.status_code == 201, booked.text
    # Another practitioner's role is someone else.
    stranger = await _role(scheduling, "Practitioner/dr-2")
    body = session("emdr", at(10), at(11), practitioner=stranger, slot=other_id)
    refused = await post(scheduling, body)
    assert refused.status_code == 422 and expressions(refused) == ["Appointment.slot[0]"]
