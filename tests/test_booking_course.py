"""The dosing course's counting (issue 10 review): calendar weeks on the clinic's clock, the
course bounded by its CarePlan's period.start, sessions typed either way, and only doses
counted (not proposals, waitlist entries or lapsed holds)."""

from __future__ import annotations

from datetime import timedelta

from services.scheduling.finding import hold_expires_url
from shared.fhir.dates import format_instant, utcnow
from tests.booking_support import at, enrol, rule_of, session, start_course
from tests.dosing_support import BASE, care_plan, clinician
from tests.factories import FHIR_JSON
from tests.scheduling_support import post
from tests.scheduling_support import session_type as typed


def nasal(start: str, end: str, **extra: object) -> dict:
    """An intranasal esketamine session (its protocol: twice weekly in weeks 1-4)."""
    return session("dosing", start, end, **extra)  # type: ignore[arg-type]


# --- finding 4: weeks are the clinic's calendar weeks -------------------------------------


async def test_next_monday_is_a_new_week_though_earlier_in_the_day(scheduling):
    await start_course(scheduling, "p1", "intranasal-esketamine")
    # Monday and Wednesday at 10:00, then next Monday at 09:00: week 2 of the course,
    # though less than 168 h after the first dose.
    for day in ("2026-03-02", "2026-03-04"):
        created = await post(scheduling, nasal(at(10, day=day), at(13, day=day)))
        assert created.status_code == 201, created.text
    monday = await post(scheduling, nasal(at(9, day="2026-03-09"), at(12, day="2026-03-09")))
    assert monday.status_code == 201, monday.text
    # A third session in that calendar week is still one too many.
    third = await post(scheduling, nasal(at(9, day="2026-03-11"), at(12, day="2026-03-11")))
    friday = await post(scheduling, nasal(at(9, day="2026-03-13"), at(12, day="2026-03-13")))
    assert third.status_code == 201, third.text
    assert friday.status_code == 409, friday.text
    assert "dosing-course-cadence" in rule_of(friday)


async def test_cadence_weeks_survive_the_change_to_summer_time(scheduling):
    await start_course(scheduling, "p1", "intranasal-esketamine")
    # Monday and Thursday 09:00 in Amsterdam: 08:00Z before 29 March 2026, 07:00Z after.
    for start, end in (
        ("2026-03-23T08:00:00Z", "2026-03-23T11:00:00Z"),
        ("2026-03-26T08:00:00Z", "2026-03-26T11:00:00Z"),
    ):
        assert (await post(scheduling, nasal(start, end))).status_code == 201
    monday = await post(scheduling, nasal("2026-03-30T07:00:00Z", "2026-03-30T10:00:00Z"))
    assert monday.status_code == 201, monday.text


async def test_weeks_are_local_calendar_weeks_not_utc_ones(scheduling):
    # (In UTC calendar weeks the first session would be a week of its own.)
    await start_course(scheduling, "p1", "intranasal-esketamine")
    # Sunday 23:30Z is Monday 00:30 in Amsterdam: the same local week as Tuesday and Thursday.
    for start, end in (
        ("2026-03-01T23:30:00Z", "2026-03-02T02:30:00Z"),
        ("2026-03-04T09:00:00Z", "2026-03-04T12:00:00Z"),
    ):
        assert (await post(scheduling, nasal(start, end))).status_code == 201
    friday = await post(scheduling, nasal("2026-03-06T09:00:00Z", "2026-03-06T12:00:00Z"))
    assert friday.status_code == 409, friday.text
    assert "dosing-course-cadence" in rule_of(friday)


# --- finding 5: a course begins with its CarePlan -----------------------------------------


async def test_a_second_course_does_not_count_the_first_course_s_doses(scheduling):
    first_plan = await start_course(scheduling, "p1")
    for n in range(6):
        day = f"2026-03-{2 + 3 * n:02d}"
        booked = await post(scheduling, session("dosing", at(9, day=day), at(12, day=day)))
        assert booked.status_code == 201, booked.text
    plan = (await scheduling.get(f"/CarePlan/{first_plan}")).json()
    done = await scheduling.put(
        f"/CarePlan/{first_plan}", json=plan | {"status": "completed"}, headers=FHIR_JSON
    )
    assert done.status_code == 200, done.text
    # Later, a new course is agreed at a new consultation (no period given).
    again = await scheduling.post(
        "/CarePlan", json=care_plan("p1"), headers=FHIR_JSON | clinician()
    )
    assert again.status_code == 201, again.text
    day = "2027-09-01"
    booked = await post(scheduling, session("dosing", at(9, day=day), at(12, day=day)))
    assert booked.status_code == 201, booked.text


async def test_an_active_dosing_plan_gets_its_course_start(scheduling):
    before = utcnow() - timedelta(seconds=1)
    created = await scheduling.post(
        "/CarePlan", json=care_plan("p1"), headers=FHIR_JSON | clinician()
    )
    assert created.status_code == 201, created.text
    start = created.json()["period"]["start"]
    assert format_instant(before) <= start <= format_instant(utcnow())
    # A later write that leaves the period out keeps the course's start.
    body = {k: v for k, v in created.json().items() if k not in ("period", "meta")}
    updated = await scheduling.put(
        f"/CarePlan/{created.json()['id']}", json=body | {"title": "Renamed"}, headers=FHIR_JSON
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["period"]["start"] == start


async def test_a_course_start_the_clinic_gives_is_kept(scheduling):
    body = care_plan("p1") | {"period": {"start": "2026-03-01"}}
    created = await scheduling.post("/CarePlan", json=body, headers=FHIR_JSON | clinician())
    assert created.status_code == 201, created.text
    assert created.json()["period"] == {"start": "2026-03-01"}


async def test_a_course_start_date_begins_at_midnight_on_the_clinic_s_clock(scheduling):
    enrol(scheduling, "p1")
    body = care_plan("p1", "intranasal-esketamine") | {"period": {"start": "2026-03-02"}}
    created = await scheduling.post("/CarePlan", json=body, headers=FHIR_JSON | clinician())
    assert created.status_code == 201, created.text
    # Sunday 23:30Z is Monday 2 March 00:30 in Amsterdam: in the course, and in its week 1.
    for start, end in (
        ("2026-03-01T23:30:00Z", "2026-03-02T02:30:00Z"),
        ("2026-03-04T09:00:00Z", "2026-03-04T12:00:00Z"),
    ):
        assert (await post(scheduling, nasal(start, end))).status_code == 201
    friday = await post(scheduling, nasal("2026-03-06T09:00:00Z", "2026-03-06T12:00:00Z"))
    assert friday.status_code == 409, friday.text
    assert "dosing-course-cadence" in rule_of(friday)


async def test_a_draft_plan_gets_no_course_start(scheduling):
    body = care_plan("p1", status="draft")
    created = await scheduling.post("/CarePlan", json=body, headers=FHIR_JSON | clinician())
    assert created.status_code == 201, created.text
    assert "period" not in created.json()


# --- finding 8: serviceType and appointmentType alike -------------------------------------


async def test_the_interval_sees_sessions_typed_by_appointment_type_too(scheduling):
    await start_course(scheduling, "p1")
    by_service = session("dosing", at(9), at(12))
    assert (await post(scheduling, by_service)).status_code == 201
    by_type = session(None, at(9, day="2026-03-05"), at(12, day="2026-03-05"))
    by_type["appointmentType"] = typed("dosing")
    assert (await post(scheduling, by_type)).status_code == 201
    # 24 h after the appointmentType-coded dose: the 48 h interval must refuse it.
    next_day = session("dosing", at(9, day="2026-03-06"), at(12, day="2026-03-06"))
    refused = await post(scheduling, next_day)
    assert refused.status_code == 409, refused.text
    assert "dosing-minimum-interval" in rule_of(refused)


# --- finding 14: only doses count ---------------------------------------------------------


async def test_a_proposed_dosing_session_is_no_dose(scheduling):
    await start_course(scheduling, "p1")
    assert (await post(scheduling, session("dosing", at(9), at(12)))).status_code == 201
    # Alternatives the clinic offered (plans, unchecked, holding no time)...
    for status, day in (("proposed", "2026-03-03"), ("waitlist", "2026-03-05")):
        offered = session("dosing", at(9, day=day), at(12, day=day), status=status)
        assert (await post(scheduling, offered)).status_code == 201
    # ...are no doses: the real booking 48 h after the first dose and 24 h before the
    # waitlist entry keeps the interval.
    wednesday = session("dosing", at(9, day="2026-03-04"), at(12, day="2026-03-04"))
    booked = await post(scheduling, wednesday)
    assert booked.status_code == 201, booked.text


async def test_a_lapsed_hold_is_no_dose(scheduling):
    await start_course(scheduling, "p1")
    lapsed = session("dosing", at(9), at(12), status="pending")
    lapsed["extension"] = [
        {"url": hold_expires_url(BASE), "valueDateTime": format_instant(utcnow())}
    ]
    assert (await post(scheduling, lapsed)).status_code == 201
    next_day = session("dosing", at(9, day="2026-03-03"), at(12, day="2026-03-03"))
    booked = await post(scheduling, next_day)
    assert booked.status_code == 201, booked.text


async def test_a_pending_and_a_checked_in_session_are_doses(scheduling):
    await start_course(scheduling, "p1")
    held = session("dosing", at(9), at(12), status="pending")
    assert (await post(scheduling, held)).status_code == 201
    next_day = session("dosing", at(9, day="2026-03-03"), at(12, day="2026-03-03"))
    refused = await post(scheduling, next_day)
    assert refused.status_code == 409, refused.text
    assert "dosing-minimum-interval" in rule_of(refused)
