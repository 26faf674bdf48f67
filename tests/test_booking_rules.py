"""Booking rules of programme sessions: session types and dosing sessions (issue 10)."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from services.scheduling.booking.dosing import session_minutes
from services.scheduling.dosing.protocol import dosing_protocols
from services.scheduling.schedule_slots import instant
from shared.fhir.dates import format_instant
from tests.booking_support import at, enrol, rule_of, session, start_course
from tests.conftest import BACKENDS
from tests.factories import appointment
from tests.scheduling_support import SESSION_TYPES, expressions, post

IV = dosing_protocols().get("iv-racemic")
ESKETAMINE = dosing_protocols().get("intranasal-esketamine")
assert IV is not None and IV.course_doses is not None and ESKETAMINE is not None


def dosing(start: str, patient: str = "Patient/p1", **extra: object) -> dict:
    """A dosing session exactly as long as the IV protocol asks, from `start`."""
    end = format_instant(instant(start) + timedelta(minutes=session_minutes(IV)))
    return session("dosing", start, end, patient=patient, **extra)  # type: ignore[arg-type]


async def test_an_unknown_session_type_is_refused_naming_the_element(scheduling):
    body = session("sauna", at(9), at(10))
    refused = await post(scheduling, body)
    assert refused.status_code == 422, refused.text
    assert expressions(refused) == ["Appointment.serviceType[0].coding[0]"]
    typed = session(None, at(9), at(10))
    typed["appointmentType"] = {"coding": [{"system": SESSION_TYPES, "code": "nap"}]}
    refused = await post(scheduling, typed)
    assert refused.status_code == 422
    assert expressions(refused) == ["Appointment.appointmentType.coding[0]"]


async def test_an_appointment_without_a_session_type_is_stored_as_before(scheduling):
    assert (await post(scheduling, appointment("p9"))).status_code == 201
    assert (await post(scheduling, session("preparation", at(11), at(12)))).status_code == 201


@pytest.mark.parametrize("status", [None, "waitlist", "finished"])
async def test_dosing_needs_an_active_enrolment(scheduling: httpx.AsyncClient, status):
    if status is not None:
        enrol(scheduling, "p1", status)
    refused = await post(scheduling, dosing(at(9)))
    assert refused.status_code == 409, refused.text
    assert "dosing-needs-active-enrolment" in rule_of(refused)
    assert (status or "no EpisodeOfCare") in rule_of(refused)
    assert expressions(refused) == ["Appointment.participant"]
    # A proposal holds no time and needs no enrolment yet.
    assert (await post(scheduling, dosing(at(9), status="proposed"))).status_code == 201


async def test_dosing_needs_a_care_plan(scheduling: httpx.AsyncClient):
    enrol(scheduling, "p1")
    refused = await post(scheduling, dosing(at(9)))
    assert refused.status_code == 422, refused.text
    assert "CarePlan" in rule_of(refused)
    await start_course(scheduling, "p1", enrolled=True)
    assert (await post(scheduling, dosing(at(9)))).status_code == 201


async def test_a_dosing_session_lasts_administration_and_observation(scheduling):
    await start_course(scheduling, "p1")
    minutes = session_minutes(IV)
    assert minutes == IV.administration_minutes + 60 * IV.monitoring.observation_hours
    body = dosing(at(9))
    short = body | {"end": body["end"].replace(":40:", ":39:")}
    refused = await post(scheduling, short)
    assert refused.status_code == 422, refused.text
    assert expressions(refused) == ["Appointment.end"]
    assert (await post(scheduling, body)).status_code == 201


@BACKENDS
async def test_doses_keep_the_protocols_minimum_interval(scheduling: httpx.AsyncClient):
    await start_course(scheduling, "p1")
    assert (await post(scheduling, dosing(at(9, day="2026-03-02")))).status_code == 201
    hours = IV.minimum_interval_hours
    assert hours == 48
    for day in ("2026-03-01", "2026-03-03", "2026-03-04"):
        refused = await post(scheduling, dosing(at(8, day=day)))
        assert refused.status_code == 409, (day, refused.text)
        assert "dosing-minimum-interval" in rule_of(refused)
    assert (await post(scheduling, dosing(at(9, day="2026-03-04")))).status_code == 201
    cancelled = dosing(at(9, day="2026-02-28"), status="cancelled")
    assert (await post(scheduling, cancelled)).status_code == 201


@BACKENDS
async def test_a_course_has_no_more_dosing_sessions_than_the_protocol(scheduling):
    await start_course(scheduling, "p1")
    # Every third day: the interval and the cadence (at most 3 a week) hold.
    days = [f"2026-03-{2 + 3 * n:02d}" for n in range(IV.course_doses + 1)]
    for day in days[:-1]:
        created = await post(scheduling, dosing(at(9, day=day)))
        assert created.status_code == 201, created.text
    refused = await post(scheduling, dosing(at(9, day=days[-1])))
    assert refused.status_code == 409, refused.text
    assert "dosing-course-length" in rule_of(refused)
    # A cancelled session leaves room for another.
    last = created.json()
    changed = last | {"status": "cancelled"}
    assert (await scheduling.put(f"/Appointment/{last['id']}", json=changed)).status_code == 200
    assert (await post(scheduling, dosing(at(9, day=days[-1])))).status_code == 201


@BACKENDS
async def test_esketamine_keeps_to_its_weekly_cadence(scheduling: httpx.AsyncClient):
    await start_course(scheduling, "p1", "intranasal-esketamine")
    phases = ESKETAMINE.course
    assert (phases[0].to_week, phases[0].per_week_max, phases[1].per_week_max) == (4, 2, 1)

    def nasal(day: str, **extra: object) -> dict:
        return session("dosing", at(9, day=day), at(12, day=day), **extra)  # type: ignore[arg-type]

    # Week 1 of the course (from Monday 2 March): Monday and Wednesday, not Friday too.
    for day in ("2026-03-02", "2026-03-04"):
        assert (await post(scheduling, nasal(day))).status_code == 201
    refused = await post(scheduling, nasal("2026-03-06"))
    assert refused.status_code == 409, refused.text
    assert "dosing-course-cadence" in rule_of(refused)
    assert expressions(refused) == ["Appointment.start"]
    # Week 2 is a week of its own; week 5 (from 30 March) allows one session.
    assert (await post(scheduling, nasal("2026-03-09"))).status_code == 201
    assert (await post(scheduling, nasal("2026-03-30"))).status_code == 201
    refused = await post(scheduling, nasal("2026-04-02"))
    assert refused.status_code == 409 and "dosing-course-cadence" in rule_of(refused)
    # A proposal is a plan, not a booking: it holds no time and is not checked yet.
    assert (await post(scheduling, nasal("2026-04-02", status="proposed"))).status_code == 201
