"""The dosing course's counting (issue 10 review): calendar weeks on the clinic's clock, the
course bounded by its CarePlan's period.start, sessions typed either way, and only doses
counted (not proposals, waitlist entries or lapsed holds)."""

from __future__ import annotations

from services.scheduling.finding import hold_expires_url
from shared.fhir.dates import format_instant, utcnow
from tests.booking_support import at, rule_of, session, start_course
from tests.dosing_support import BASE
from tests.scheduling_support import post
from tests.scheduling_support import session_type as typed


def nasal(start: str, end: str, **extra: object) -> dict:
    """An intranasal esketamine session (its protocol: twice weekly in weeks 1-4)."""
    return session("dosing", start, end, **extra)  # type: ignore[arg-type]


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
