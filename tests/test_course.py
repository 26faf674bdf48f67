"""A whole course across intake, scheduling and outcomes on a real broker (issue 10).

Intake enrols the patient (referral, screening, the psychiatrist's `$review`, consent);
scheduling learns the patient, episode, consent and screening only from intake's events, and
the body weight and blood pressures only from outcomes' events. Six IV racemic ketamine doses
over three weeks (Monday, Wednesday, Friday), each followed by an EMDR session found with
`$find`, held and booked inside the dose's plasticity window; the third dose is held for a
pre-dose blood pressure of 152/96 posted to outcomes, and released by the psychiatrist.
Outcomes ends up with every session and dose from scheduling's events; a seventh dosing
session is refused by the course length.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from typing import Any

import httpx

from tests import kafka_support
from tests.course_support import (
    HOLD_CODE,
    HOLD_URL,
    OPTIMAL_END,
    OPTIMAL_START,
    PER_KG,
    WAIT,
    WINDOW_END,
    WINDOW_START,
    Clinic,
    Dose,
    Enrolled,
    administration,
    body_weight,
    clinic_zone,
    course_days,
    course_plan,
    created,
    dosing_appointment,
    enrol_at_intake,
    entries,
    find_emdr,
    first_monday,
    free_slot,
    ok,
    open_clinic,
    parse,
    pre_dose_bp,
    replicated,
    rule_of,
    window_values,
)
from tests.dosing_support import VERSION
from tests.finding_support import OPENED_BY, given, opened
from tests.kafka_support import Running, eventually, programme
from tooling.broker import Broker

kafka_broker = kafka_support.kafka_broker
topic_prefix = kafka_support.topic_prefix
new_database = kafka_support.new_database

MEASURED_KG = 72.0
MG = 36.0  # 0.5 mg/kg at 72 kg (the screening's 68 kg would make it 0.53)
HELD = 3  # the dose held for blood pressure


async def test_a_whole_course_of_six_doses_each_with_emdr_in_its_window(
    kafka_broker: Broker, topic_prefix: str, new_database: Callable[[str], str]
):
    services = programme(kafka_broker, topic_prefix, new_database)
    async with services as (intake, scheduling, outcomes):
        await _course(intake, scheduling, outcomes)


async def _course(intake: Running, scheduling: Running, outcomes: Running) -> None:
    front, sched, out = intake.client, scheduling.client, outcomes.client
    zone = clinic_zone(sched)
    monday = first_monday(datetime.now(zone).date())
    days = course_days(monday)

    # The clinic: staff, room, schedules and three-plus weeks of slots (scheduling).
    clinic = await open_clinic(sched, monday, monday + timedelta(days=27))

    # 1. Intake enrols the patient; scheduling learns it from intake's events only.
    patient = await enrol_at_intake(front, clinic.psychiatrist)
    pid = patient.patient
    await replicated(sched, f"/Patient/{pid}")
    await replicated(sched, f"/EpisodeOfCare/{patient.episode}", lambda e: e["status"] == "active")
    await replicated(sched, f"/Consent/{patient.consent}")
    await replicated(sched, f"/QuestionnaireResponse/{patient.screening}")

    # 2. The psychiatrist agrees the course (a CarePlan naming the IV protocol).
    plan = await ok(
        await sched.post(
            "/CarePlan", json=course_plan(patient, clinic), headers=clinic.psychiatrist_token()
        ),
        201,
    )
    assert plan["instantiatesCanonical"] == [
        f"https://fhir.example.org/kemdr/PlanDefinition/iv-racemic|{VERSION}"
    ]

    # 3. Outcomes measures the body weight; scheduling doses by it (not the screening's).
    weighed = datetime.now(UTC).replace(microsecond=0)
    weight_id = await created(out, body_weight(pid, MEASURED_KG, weighed))
    await replicated(sched, f"/Observation/{weight_id}")

    # 4. Six doses, each followed by an EMDR session in its window.
    doses = []
    for number, day in enumerate(days, start=1):
        dose = Dose(number, day)
        await _dose(sched, out, clinic, patient, dose, held=number == HELD)
        await _emdr(sched, patient, dose)
        doses.append(dose)

    # 5. The course as each service holds it.
    await _course_done(sched, out, clinic, patient, doses)


async def _dose(
    sched: httpx.AsyncClient,
    out: httpx.AsyncClient,
    clinic: Clinic,
    patient: Enrolled,
    dose: Dose,
    *,
    held: bool,
) -> None:
    """Book the day's dosing session, (hold and release it,) arrive, give the dose, check its
    window, fulfil the session."""
    zone = clinic_zone(sched)
    start = datetime.combine(dose.day, time(9), zone)
    psychiatrist = clinic.psychiatrist_token()
    slots = [
        await free_slot(sched, clinic.dosing_schedule, start),
        await free_slot(sched, clinic.room_schedule, start),
    ]
    booked = await sched.post(
        "/Appointment", json=dosing_appointment(patient, clinic, slots), headers=psychiatrist
    )
    session = await ok(booked, 201)
    assert session["status"] == "booked"
    for slot in slots:
        assert (await ok(await sched.get(f"/Slot/{slot['id']}")))["status"] == "busy"
    path = f"/Appointment/{session['id']}"

    if held:
        session = await _hold_and_release(sched, out, clinic, patient, session, start)

    # The patient arrives: the session's Encounter opens.
    arrived = await ok(
        await sched.put(path, json={**session, "status": "arrived"}, headers=psychiatrist)
    )
    (encounter,) = await entries(sched, "/Encounter", appointment=f"Appointment/{session['id']}")
    assert encounter["status"] == "in-progress"
    assert encounter["subject"] == {"reference": f"Patient/{patient.patient}"}

    # The dose: completed, IV, in range for the measured weight, in this session.
    body = administration(patient, clinic, arrived, encounter["id"], MG)
    given_dose = await ok(
        await sched.post("/MedicationAdministration", json=body, headers=psychiatrist), 201
    )
    (per_kg,) = [e for e in given_dose["extension"] if e["url"] == PER_KG]
    # mg/kg by the weight outcomes measured, not the screening's.
    assert per_kg["valueQuantity"]["value"] == round(MG / MEASURED_KG, 4)
    window = window_values(
        await ok(
            await sched.get(f"/MedicationAdministration/{given_dose['id']}/$plasticity-window"),
            200,
        )
    )
    ended = parse(given_dose["effectivePeriod"]["end"])
    assert window["protocol"].startswith("iv-racemic")
    assert [window[name] - ended for name in ("windowStart", "optimalStart")] == [
        timedelta(hours=WINDOW_START),
        timedelta(hours=OPTIMAL_START),
    ]
    assert window["optimalEnd"] - ended == timedelta(hours=OPTIMAL_END)
    assert window["windowEnd"] - ended == timedelta(hours=WINDOW_END)

    # The session ends: fulfilled, its Encounter finished.
    fulfilled = await ok(
        await sched.put(path, json={**arrived, "status": "fulfilled"}, headers=psychiatrist)
    )
    assert fulfilled["status"] == "fulfilled"
    (finished,) = await entries(sched, "/Encounter", appointment=f"Appointment/{session['id']}")
    assert (finished["id"], finished["status"]) == (encounter["id"], "finished")
    dose.session, dose.administration, dose.window = fulfilled, given_dose, window


async def _hold_and_release(
    sched: httpx.AsyncClient,
    out: httpx.AsyncClient,
    clinic: Clinic,
    patient: Enrolled,
    session: dict[str, Any],
    start: datetime,
) -> dict[str, Any]:
    """A pre-dose blood pressure of 152/96 at outcomes holds the session at scheduling; no
    dose is accepted until the psychiatrist releases it. The released session."""
    path = f"/Appointment/{session['id']}"
    reading = await created(
        out, pre_dose_bp(patient.patient, 152, 96, start - timedelta(minutes=10))
    )

    async def on_hold() -> dict[str, Any] | None:
        current = (await sched.get(path)).json()
        return current if current["participant"][1]["status"] == "needs-action" else None

    held = await eventually(on_hold, timeout=WAIT, what="the session held for blood pressure")
    assert held["status"] == "booked"
    assert [p["status"] for p in held["participant"]] == ["accepted", "needs-action", "accepted"]
    (issue,) = await entries(sched, "/DetectedIssue", code=HOLD_CODE, status="preliminary")
    assert [i["reference"] for i in issue["implicated"]] == [f"Observation/{reading}", path[1:]]
    assert "above the hold threshold 140/90 mmHg" in issue["detail"]
    assert held["extension"] == [
        {"url": HOLD_URL, "valueReference": {"reference": f"DetectedIssue/{issue['id']}"}}
    ]

    # No dose while the hold is in force.
    refused = await sched.post(
        "/MedicationAdministration",
        json=administration(patient, clinic, held, None, MG),
        headers=clinic.psychiatrist_token(),
    )
    assert refused.status_code == 409, refused.text
    assert f"on hold (DetectedIssue/{issue['id']}" in rule_of(refused)

    reason = {
        "resourceType": "Parameters",
        "parameter": [{"name": "reason", "valueString": "Repeat reading 134/84 after 15 min rest"}],
    }
    released = await ok(
        await sched.post(f"{path}/$release-hold", json=reason, headers=clinic.psychiatrist_token()),
        200,
    )
    assert [p["status"] for p in released["participant"]] == ["accepted"] * 3
    assert "extension" not in released
    return released


async def _emdr(sched: httpx.AsyncClient, patient: Enrolled, dose: Dose) -> None:
    """`$find` an EMDR session in the dose's window (optimal part first), `$hold` the first
    proposal, `$book` it; the booked session records its dose and offset."""
    window = dose.window
    found = await ok(await sched.post("/Appointment/$find", json=find_emdr(patient, 100)), 200)
    assert found["resourceType"] == "Bundle" and found["type"] == "searchset"
    proposals = [entry["resource"] for entry in found["entry"]]
    assert proposals, "no EMDR proposal in the window"
    optimal = []
    for proposal in proposals:
        start, end = parse(proposal["start"]), parse(proposal["end"])
        assert proposal["status"] == "proposed"
        assert window["windowStart"] <= start and end <= window["windowEnd"], proposal
        optimal.append(window["optimalStart"] <= start < window["optimalEnd"])
        assert opened(proposal)["dose"] == {
            "reference": f"MedicationAdministration/{dose.administration['id']}"
        }
    # The optimal part first, then the rest of the window.
    assert optimal == sorted(optimal, reverse=True) and optimal[0] and not optimal[-1]
    first = proposals[0]
    # The earliest time of the optimal part: the therapist is free from its start.
    assert parse(first["start"]) == window["optimalStart"]

    held = await ok(await sched.post("/Appointment/$hold", json=given(first)), 201)
    assert held["status"] == "pending"
    booked = await ok(await sched.post("/Appointment/$book", json=given(held)), 200)
    assert (booked["id"], booked["status"]) == (held["id"], "booked")
    assert booked["start"] == first["start"]
    recorded = opened(booked)
    assert recorded["dose"] == {
        "reference": f"MedicationAdministration/{dose.administration['id']}"
    }
    offset = recorded["offset-hours"]
    ended = parse(dose.administration["effectivePeriod"]["end"])
    assert offset == (parse(booked["start"]) - ended).total_seconds() / 3600
    assert OPTIMAL_START <= offset < OPTIMAL_END
    assert [e["url"] for e in booked["extension"]] == [OPENED_BY]
    dose.emdr = booked


async def _course_done(
    sched: httpx.AsyncClient,
    out: httpx.AsyncClient,
    clinic: Clinic,
    patient: Enrolled,
    doses: list[Dose],
) -> None:
    pid = f"Patient/{patient.patient}"
    given_doses = await entries(sched, "/MedicationAdministration", patient=pid, _count="50")
    assert len(given_doses) == 6
    assert {d["status"] for d in given_doses} == {"completed"}
    sessions = await entries(sched, "/Appointment", patient=pid, _count="50", _sort="date")
    kinds = [(s["serviceType"][0]["coding"][0]["code"], s["status"]) for s in sessions]
    assert kinds == [("dosing", "fulfilled"), ("emdr", "booked")] * 6
    for dose in doses:
        start, end = parse(dose.emdr["start"]), parse(dose.emdr["end"])
        assert dose.window["windowStart"] <= start and end <= dose.window["windowEnd"]
        assert opened(dose.emdr)["dose"] == {
            "reference": f"MedicationAdministration/{dose.administration['id']}"
        }
    (issue,) = await entries(sched, "/DetectedIssue", code=HOLD_CODE, patient=pid)
    assert issue["status"] == "final"
    (mitigation,) = issue["mitigation"]
    assert mitigation["author"] == {"reference": clinic.psychiatrist}
    assert mitigation["action"]["text"].startswith("Dose hold released: Repeat reading")

    # Outcomes holds every session and dose as scheduling's current version, read there.
    async def mirrored() -> bool:
        for res_type, owned in (
            ("Appointment", sessions),
            ("MedicationAdministration", given_doses),
        ):
            copies = await entries(out, f"/{res_type}", patient=pid, _count="50")
            if sorted(copies, key=_id) != sorted(owned, key=_id):
                return False
        return True

    await eventually(mirrored, timeout=WAIT, what="outcomes' replicas of sessions and doses")
    # Each step of the held session was an event: booked, held, released, arrived, fulfilled.
    held = doses[HELD - 1].session["id"]
    history = await ok(await out.get(f"/Appointment/{held}/_history"), 200)
    steps = [entry["resource"] for entry in reversed(history["entry"])]
    assert [s["status"] for s in steps] == ["booked", "booked", "booked", "arrived", "fulfilled"]
    assert [s["participant"][1]["status"] for s in steps] == [
        "accepted",
        "needs-action",
        "accepted",
        "accepted",
        "accepted",
    ]
    emdr = await ok(await out.get(f"/Appointment/{doses[0].emdr['id']}"), 200)
    assert opened(emdr) == opened(doses[0].emdr)

    # A seventh dosing session is beyond the course.
    zone = clinic_zone(sched)
    seventh = datetime.combine(doses[-1].day + timedelta(days=4), time(9), zone)
    slots = [
        await free_slot(sched, clinic.dosing_schedule, seventh),
        await free_slot(sched, clinic.room_schedule, seventh),
    ]
    refused = await sched.post(
        "/Appointment",
        json=dosing_appointment(patient, clinic, slots),
        headers=clinic.psychiatrist_token(),
    )
    assert refused.status_code == 409, refused.text
    assert "dosing-course-length" in rule_of(refused)
    assert (await ok(await sched.get(f"/Slot/{slots[0]['id']}")))["status"] == "free"


def _id(resource: dict[str, Any]) -> str:
    return resource["id"]
