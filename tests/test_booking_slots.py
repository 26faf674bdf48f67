"""An Appointment books a free Slot it fits in (busy), and gives it back when cancelled or
deleted (free), each change of the Slot an update of its own (issue 10)."""

from __future__ import annotations

import asyncio

import httpx
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
            practitioner="Practitioner/dr-2",
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
            practitioner="Practitioner/dr-2",
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
    slot_id = await _slot(scheduling)
    # Nobody in common but the slot: only the slot rule can tell them apart.
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
