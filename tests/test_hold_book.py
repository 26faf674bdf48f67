"""`$hold` then `$book`: a proposal held as pending until its stated expiry, then booked;
409 when its slot went meanwhile; a lapsed hold stops holding the time."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx

from services.scheduling.schedule_slots import instant
from tests.auth_support import bearer
from tests.booking_support import rule_of
from tests.conftest import BACKENDS
from tests.factories import FHIR_JSON
from tests.finding_support import (
    HOLD_EXPIRES,
    calendar,
    call,
    ended,
    find,
    free_slot,
    given,
    given_dose,
    proposals,
    slots_of,
)

DR = "Practitioner/dr-emdr"


async def _setup(client: httpx.AsyncClient) -> tuple[datetime, str]:
    """p1 and p2 each have an open window; dr-emdr has one free slot in it."""
    end = ended()
    await given_dose(client, "p1", end)
    await given_dose(client, "p2", end)
    schedule_id = await calendar(client, DR, "emdr")
    return end, await free_slot(client, schedule_id, end + timedelta(hours=30))


async def _slot_status(client: httpx.AsyncClient, slot_id: str) -> str:
    return (await client.get(f"/Slot/{slot_id}")).json()["status"]


def _expiry(appointment: dict) -> datetime:
    (found,) = [e for e in appointment.get("extension", []) if e["url"] == HOLD_EXPIRES]
    return instant(found["valueDateTime"])


@BACKENDS
async def test_a_held_proposal_is_pending_until_its_expiry_then_booked(
    scheduling: httpx.AsyncClient,
):
    _, slot_id = await _setup(scheduling)
    (proposal,) = await proposals(scheduling, find("Patient/p1"))
    held = await call(scheduling, "hold", given(proposal))
    assert held.status_code == 201, held.text
    hold = held.json()
    assert hold["status"] == "pending" and slots_of(hold) == [f"Slot/{slot_id}"]
    now = datetime.now(UTC).replace(tzinfo=None)
    assert timedelta(minutes=9) < _expiry(hold) - now <= timedelta(minutes=10)
    assert await _slot_status(scheduling, slot_id) == "busy"
    assert await proposals(scheduling, find("Patient/p2")) == []  # the time is held
    booked = await call(scheduling, "book", given(hold))
    assert booked.status_code == 200, booked.text
    body = booked.json()
    assert (body["id"], body["status"]) == (hold["id"], "booked")
    assert all(e["url"] != HOLD_EXPIRES for e in body.get("extension", []))
    assert {p["status"] for p in body["participant"]} == {"accepted"}
    again = await call(scheduling, "book", given(body))
    assert again.status_code == 409, again.text
    assert "book-needs-proposal-or-hold" in rule_of(again)


@BACKENDS
async def test_booking_a_slot_that_went_meanwhile_is_409(scheduling: httpx.AsyncClient):
    _, slot_id = await _setup(scheduling)
    (mine,) = await proposals(scheduling, find("Patient/p1"))
    (theirs,) = await proposals(scheduling, find("Patient/p2"))
    booked = await call(scheduling, "book", given(theirs))
    assert booked.status_code == 201, booked.text
    refused = await call(scheduling, "book", given(mine))
    assert refused.status_code == 409, refused.text
    assert "slot-must-be-free" in rule_of(refused)
    held = await call(scheduling, "hold", given(mine))
    assert held.status_code == 409, held.text
    assert await _slot_status(scheduling, slot_id) == "busy"


@BACKENDS
async def test_a_lapsed_hold_stops_holding_its_time(
    service_client: Callable[..., httpx.AsyncClient],
):
    async with service_client("scheduling", hold_minutes=0) as scheduling:
        _, slot_id = await _setup(scheduling)
        (mine,) = await proposals(scheduling, find("Patient/p1"))
        (theirs,) = await proposals(scheduling, find("Patient/p2"))
        held = (await call(scheduling, "hold", given(mine))).json()
        assert held["status"] == "pending"
        # p1's hold lapsed at once: p2 books the slot, and the lapsed hold is cancelled.
        booked = await call(scheduling, "book", given(theirs))
        assert booked.status_code == 201, booked.text
        lapsed = (await scheduling.get(f"/Appointment/{held['id']}")).json()
        assert lapsed["status"] == "cancelled"
        assert await _slot_status(scheduling, slot_id) == "busy"
        # Booking the lapsed hold now finds its slot gone.
        refused = await call(scheduling, "book", given(lapsed))
        assert refused.status_code == 409, refused.text


@BACKENDS
async def test_hold_and_book_take_a_proposed_appointment(scheduling: httpx.AsyncClient):
    await _setup(scheduling)
    (proposal,) = await proposals(scheduling, find("Patient/p1"))
    for operation in ("hold", "book"):
        refused = await call(scheduling, operation, given({**proposal, "status": "booked"}))
        assert refused.status_code == 422, refused.text
    wrong = {
        "resourceType": "Parameters",
        "parameter": [{"name": "appointment", "resource": {"resourceType": "Patient"}}],
    }
    assert (await call(scheduling, "hold", wrong)).status_code == 422


@BACKENDS
async def test_book_does_not_revive_a_hold_someone_cancelled(scheduling: httpx.AsyncClient):
    await _setup(scheduling)
    (proposal,) = await proposals(scheduling, find("Patient/p1"))
    hold = (await call(scheduling, "hold", given(proposal))).json()
    declined = {"status": "cancelled", "cancelationReason": {"text": "patient declined"}}
    stored = await scheduling.put(
        f"/Appointment/{hold['id']}", json=hold | declined, headers=FHIR_JSON
    )
    assert stored.status_code == 200, stored.text
    revived = await call(scheduling, "book", given(stored.json()))
    assert revived.status_code == 409, revived.text
    assert "book-needs-proposal-or-hold" in rule_of(revived)
    assert (await scheduling.get(f"/Appointment/{hold['id']}")).json()["status"] == "cancelled"


@BACKENDS
async def test_book_of_a_hold_needs_update_scope(scheduling: httpx.AsyncClient):
    await _setup(scheduling)
    (proposal,) = await proposals(scheduling, find("Patient/p1"))
    hold = (await call(scheduling, "hold", given(proposal))).json()
    create_only = FHIR_JSON | bearer(scope="system/Appointment.cr system/Ops.r")
    refused = await scheduling.post("/Appointment/$book", json=given(hold), headers=create_only)
    assert refused.status_code == 403, refused.text
    assert refused.json()["resourceType"] == "OperationOutcome"
    assert "system/Appointment.u" in refused.json()["issue"][0]["diagnostics"]
    assert (await scheduling.get(f"/Appointment/{hold['id']}")).json()["status"] == "pending"
    with_update = FHIR_JSON | bearer(scope="system/Appointment.cru system/Ops.r")
    booked = await scheduling.post("/Appointment/$book", json=given(hold), headers=with_update)
    assert booked.status_code == 200, booked.text
