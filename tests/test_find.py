"""`POST [base]/Appointment/$find`: proposals in the patient's plasticity window, optimal
part first, from qualified practitioners' free slots, busy people left out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from tests.auth_support import bearer
from tests.booking_support import rule_of, session
from tests.conftest import BACKENDS
from tests.factories import FHIR_JSON
from tests.finding_support import (
    actors_of,
    calendar,
    call,
    ended,
    fhir,
    find,
    free_slot,
    given,
    given_dose,
    opened,
    proposals,
    slots_of,
)
from tests.replicas import replicate
from tests.scheduling_support import created_id, expressions

DR = "Practitioner/dr-emdr"


@BACKENDS
async def test_optimal_slots_come_first_then_the_rest_of_the_window(
    scheduling: httpx.AsyncClient,
):
    end = ended()
    dose_id = await given_dose(scheduling, "p1", end)
    schedule_id = await calendar(scheduling, DR, "emdr")
    early = await free_slot(scheduling, schedule_id, end + timedelta(hours=5))
    late = await free_slot(scheduling, schedule_id, end + timedelta(hours=100))
    best = await free_slot(scheduling, schedule_id, end + timedelta(hours=30))
    await free_slot(scheduling, schedule_id, end + timedelta(hours=200))  # after the window
    found = await proposals(scheduling, find("Patient/p1"))
    assert [slots_of(a) for a in found] == [[f"Slot/{s}"] for s in (best, early, late)]
    first = found[0]
    assert first["status"] == "proposed"
    assert first["start"] == fhir(end + timedelta(hours=30))
    assert actors_of(first) == ["Patient/p1", DR]
    assert first["participant"][0]["status"] == "needs-action"
    assert opened(first) == {
        "dose": {"reference": f"MedicationAdministration/{dose_id}"},
        "offset-hours": 30,
    }
    limited = await proposals(scheduling, find("Patient/p1", _count=1))
    assert [slots_of(a) for a in limited] == [[f"Slot/{best}"]]


async def test_proposals_are_based_on_the_enrolment_s_referral(scheduling: httpx.AsyncClient):
    end = ended()
    await given_dose(scheduling, "p1", end)
    episode = {
        "resourceType": "EpisodeOfCare",
        "status": "active",
        "patient": {"reference": "Patient/p1"},
        "referralRequest": [{"reference": "ServiceRequest/ref-1"}],
    }
    replicate(scheduling, "EpisodeOfCare", "ep-p1", episode, version=2)  # as intake's event
    schedule_id = await calendar(scheduling, DR, "emdr")
    await free_slot(scheduling, schedule_id, end + timedelta(hours=30))
    (proposal,) = await proposals(scheduling, find("Patient/p1"))
    assert proposal["basedOn"] == [{"reference": "ServiceRequest/ref-1"}]


@BACKENDS
async def test_without_an_open_window_find_needs_start_and_end(scheduling: httpx.AsyncClient):
    refused = await call(scheduling, "find", find("Patient/p9"))
    assert refused.status_code == 422, refused.text
    assert "find-needs-window" in rule_of(refused)
    assert "Parameters.parameter.where(name='start').valueDateTime" in expressions(refused)
    end = ended()
    schedule_id = await calendar(scheduling, DR, "emdr")
    slot_id = await free_slot(scheduling, schedule_id, end + timedelta(hours=5))
    period = {"start": end, "end": end + timedelta(days=1)}
    found = await proposals(scheduling, find("Patient/p9", **period))
    assert [slots_of(a) for a in found] == [[f"Slot/{slot_id}"]]
    assert "extension" not in found[0]  # no dose opened a window


@BACKENDS
async def test_only_practitioners_whose_schedule_offers_the_type_are_proposed(
    scheduling: httpx.AsyncClient,
):
    end = ended()
    await given_dose(scheduling, "p1", end)
    emdr = await calendar(scheduling, DR, "emdr")
    other = await calendar(scheduling, "Practitioner/dr-integration", "integration")
    role = await created_id(
        scheduling,
        {
            "resourceType": "PractitionerRole",
            "active": True,
            "practitioner": {"reference": "Practitioner/dr-role"},
        },
    )
    by_role = await calendar(scheduling, f"PractitionerRole/{role}", "emdr")
    mine = await free_slot(scheduling, emdr, end + timedelta(hours=30))
    await free_slot(scheduling, other, end + timedelta(hours=30))
    theirs = await free_slot(scheduling, by_role, end + timedelta(hours=31))
    found = await proposals(scheduling, find("Patient/p1"))
    assert [(slots_of(a), actors_of(a)[1]) for a in found] == [
        ([f"Slot/{mine}"], DR),
        ([f"Slot/{theirs}"], "Practitioner/dr-role"),  # a role books its practitioner
    ]
    only = await proposals(scheduling, find("Patient/p1", practitioner="Practitioner/dr-role"))
    assert [slots_of(a) for a in only] == [[f"Slot/{theirs}"]]
    unknown = await call(scheduling, "find", find("Patient/p1", kind="yoga"))
    assert unknown.status_code == 422, unknown.text


@BACKENDS
async def test_times_the_practitioner_or_the_patient_is_booked_are_left_out(
    scheduling: httpx.AsyncClient,
):
    end = ended()
    await given_dose(scheduling, "p1", end)
    schedule_id = await calendar(scheduling, DR, "emdr")
    starts = [end + timedelta(hours=h) for h in (30, 32, 34)]
    slot_ids = [await free_slot(scheduling, schedule_id, start) for start in starts]
    # The practitioner sees someone else at the first time, the patient is busy at the second.
    elsewhere = session(
        None, fhir(starts[0]), fhir(starts[0] + timedelta(hours=1)), patient="Patient/p2"
    )
    elsewhere["participant"][1]["actor"]["reference"] = DR
    own = session(None, fhir(starts[1]), fhir(starts[1] + timedelta(minutes=30)))
    own["participant"][1]["actor"]["reference"] = "Practitioner/someone"
    for body in (elsewhere, own):
        created = await scheduling.post("/Appointment", json=body)
        assert created.status_code == 201, created.text
    found = await proposals(scheduling, find("Patient/p1"))
    assert [slots_of(a) for a in found] == [[f"Slot/{slot_ids[2]}"]]


@BACKENDS
async def test_rooms_with_schedules_are_booked_with_the_practitioner(
    scheduling: httpx.AsyncClient,
):
    end = ended()
    await given_dose(scheduling, "p1", end)
    practitioner = await calendar(scheduling, DR, "emdr")
    room = await calendar(scheduling, "Location/room-1", "emdr")
    await free_slot(scheduling, practitioner, end + timedelta(hours=30))  # no room then
    with_room = await free_slot(scheduling, practitioner, end + timedelta(hours=31))
    room_slot = await free_slot(scheduling, room, end + timedelta(hours=31))
    found = await proposals(scheduling, find("Patient/p1"))
    assert [slots_of(a) for a in found] == [[f"Slot/{with_room}", f"Slot/{room_slot}"]]
    assert actors_of(found[0]) == ["Patient/p1", DR, "Location/room-1"]


@BACKENDS
async def test_no_proposal_runs_past_the_window_s_end(scheduling: httpx.AsyncClient):
    end = ended()
    await given_dose(scheduling, "p1", end)
    schedule_id = await calendar(scheduling, DR, "emdr")
    # The window closes 168 h after the dose: this slot starts 15 min before and ends after.
    await free_slot(scheduling, schedule_id, end + timedelta(hours=168, minutes=-15))
    other = await calendar(scheduling, "Practitioner/dr-other", "emdr")
    inside = await free_slot(scheduling, other, end + timedelta(hours=167, minutes=30))
    found = await proposals(scheduling, find("Patient/p1"))
    assert [slots_of(p) for p in found] == [[f"Slot/{inside}"]]
    booked = await call(scheduling, "book", given(found[0]))
    assert booked.status_code == 201, booked.text


@BACKENDS
async def test_find_does_not_answer_for_another_practice_s_patient(scheduling: httpx.AsyncClient):
    patient = {"resourceType": "Patient", "managingOrganization": {"reference": "Organization/b"}}
    replicate(scheduling, "Patient", "pb", patient)
    day = (datetime.now(UTC) + timedelta(days=2)).replace(hour=9, minute=0, second=0, microsecond=0)
    schedule_id = await calendar(scheduling, DR, "emdr")
    await free_slot(scheduling, schedule_id, day)
    body = find("Patient/pb", start=day, end=day + timedelta(hours=3))
    practice_a = FHIR_JSON | bearer(practice="Organization/a")
    refused = await scheduling.post("/Appointment/$find", json=body, headers=practice_a)
    assert refused.status_code == 404, refused.text
    assert refused.json()["resourceType"] == "OperationOutcome"
    # Practice b sees its own patient, as does a programme-wide caller.
    practice_b = FHIR_JSON | bearer(practice="Organization/b")
    seen = await scheduling.post("/Appointment/$find", json=body, headers=practice_b)
    assert seen.status_code == 200, seen.text
    assert len(await proposals(scheduling, body)) == 1


@BACKENDS
async def test_find_refuses_dosing_sessions(scheduling: httpx.AsyncClient):
    end = ended()
    await given_dose(scheduling, "p1", end)
    await calendar(scheduling, "Practitioner/dr-dose", "dosing")
    refused = await call(scheduling, "find", find("Patient/p1", kind="dosing"))
    assert refused.status_code == 422, refused.text
    assert expressions(refused) == [
        "Parameters.parameter.where(name='service-type').valueCodeableConcept"
    ]
    assert "booked directly" in rule_of(refused)
