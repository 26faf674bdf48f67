"""Dosing-session rules: an active enrolment, a long enough session, the protocol's
minimum interval between doses and its course length."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from services.scheduling.booking.cadence import check_cadence
from services.scheduling.booking.search import PARTICIPANT, appointments, course, episode_statuses
from services.scheduling.booking.session import Booking
from services.scheduling.dosing.protocol import Protocol
from services.scheduling.finding.busy import hold_lapsed
from services.scheduling.schedule_slots import instant
from services.scheduling.session_types import session_type_system
from services.scheduling.settings import SchedulingSettings
from shared.fhir.dates import format_instant, utcnow
from shared.fhir.errors import FHIRError, invalid

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

    from shared.fhir.rules import WriteContext

ENROLMENT_RULE = "dosing-needs-active-enrolment"
INTERVAL_RULE = "dosing-minimum-interval"
COURSE_RULE = "dosing-course-length"
# The statuses of a dosing session that is (or will be) a dose: not a proposal or waitlist
# entry (a plan holding no time), nor one that did not or will not take place. A pending
# `$hold` counts until it lapses.
DOSE_STATUSES = ("booked", "pending", "checked-in", "arrived", "fulfilled")


def session_minutes(protocol: Protocol) -> float:
    """Administration plus the post-dose observation, from the protocol file."""
    return (protocol.administration_minutes or 0) + protocol.monitoring.observation_hours * 60


def _check_enrolment(context: WriteContext, patient: str) -> None:
    statuses = episode_statuses(context, patient)
    if "active" not in statuses:
        shown = ", ".join(statuses) or "no EpisodeOfCare"
        raise FHIRError(
            409,
            f"Rule {ENROLMENT_RULE}: dosing is booked only for a patient in active care; "
            f"{patient} has {shown}",
            code="business-rule",
            expression=[PARTICIPANT],
        )


def _others(context: WriteContext, patient: str, booking: Booking) -> list[dict[str, Any]]:
    """The patient's other dosing sessions that are (or will be) doses: typed dosing by
    serviceType or appointmentType (both searched, merged by id), in a DOSE_STATUSES
    status, lapsed holds left out."""
    base = context.interactions.settings.canonical_base
    system = session_type_system(base)
    found: dict[str, dict[str, Any]] = {}
    for param in ("service-type", "appointment-type"):
        pairs = [
            ("patient", patient),
            (param, f"{system}|dosing"),
            ("status", ",".join(DOSE_STATUSES)),
        ]
        for appointment in appointments(context, pairs):
            found.setdefault(str(appointment.get("id")), appointment)
    now = utcnow()
    return sorted(
        (
            a
            for a in found.values()
            if a.get("id") != booking.id and a.get("start") and not hold_lapsed(a, base, now)
        ),
        key=lambda a: instant(a["start"]),
    )


def _course_start(context: WriteContext, plan: dict[str, Any], zone: ZoneInfo) -> datetime:
    """When the plan's course began (naive UTC): its period.start (a date without a time
    from its midnight on the clinic's clock), else (a plan stored before the enricher gave
    it one) the creation of the plan, its version 1."""
    since = (plan.get("period") or {}).get("start")
    if isinstance(since, str):
        if "T" in since:
            return instant(since)
        local = instant(since).replace(tzinfo=zone)  # the date's midnight, clinic time
        return local.astimezone(UTC).replace(tzinfo=None)
    first = context.interactions.store.vread(context.session, "CarePlan", plan["id"], 1)
    return first.last_updated


def check_dosing(context: WriteContext, booking: Booking) -> None:
    """409 without an active episode, 422 without a CarePlan or when too short, 409 when too
    close to another dose or beyond the course."""
    patient = booking.patient
    if patient is None:
        raise invalid("A dosing session needs its Patient participant", [PARTICIPANT])
    _check_enrolment(context, patient)
    protocol, plan = course(context, patient)
    assert booking.start is not None and booking.end is not None
    minutes = session_minutes(protocol)
    if booking.end - booking.start < timedelta(minutes=minutes):
        raise invalid(
            f"A dosing session of protocol {protocol.id} lasts at least {minutes:g} minutes "
            "(administration and post-dose observation)",
            ["Appointment.end"],
        )
    others = _others(context, patient, booking)
    interval = timedelta(hours=protocol.minimum_interval_hours)
    for other in others:
        other_start = instant(other["start"])
        gap = abs(other_start - booking.start)
        if gap < interval:
            raise FHIRError(
                409,
                f"Rule {INTERVAL_RULE}: protocol {protocol.id} needs "
                f"{protocol.minimum_interval_hours:g} h between doses; Appointment/{other['id']} "
                f"starts {format_instant(other_start)}",
                code="business-rule",
                expression=["Appointment.start"],
            )
    settings = context.interactions.settings
    assert isinstance(settings, SchedulingSettings)  # create_app makes sure of it
    zone = settings.clinic_zone()
    # The course began with the plan's period.start (the CarePlan enricher gives an active
    # plan one when the client does not); sessions before it are of an earlier course.
    since = _course_start(context, plan, zone)
    counted = [o for o in others if instant(o["start"]) >= since]
    check_cadence(protocol, booking.start, [instant(o["start"]) for o in counted], zone)
    if protocol.course_doses is not None and len(counted) >= protocol.course_doses:
        raise FHIRError(
            409,
            f"Rule {COURSE_RULE}: protocol {protocol.id} is a course of "
            f"{protocol.course_doses} doses and CarePlan/{plan['id']} has {len(counted)} "
            "dosing sessions already",
            code="business-rule",
            expression=["Appointment.serviceType"],
        )
