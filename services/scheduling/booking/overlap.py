"""No double-booking: a patient, practitioner or room is in one held Appointment at a time,
except an in-session EMDR session inside the patient's own dosing session."""

from __future__ import annotations

from typing import TYPE_CHECKING

from services.scheduling.booking.participants import (
    booked_as,
    caller_sees,
    held_before,
    names_for,
)
from services.scheduling.booking.search import course
from services.scheduling.booking.session import Booking, booking
from services.scheduling.finding.busy import hold_lapsed
from shared.fhir.dates import format_instant, utcnow
from shared.fhir.errors import FHIRError

if TYPE_CHECKING:
    from shared.fhir.rules import WriteContext

OVERLAP_RULE = "no-double-booking"
# The pair that may share the patient and the room: EMDR during the dose.
IN_SESSION_PAIR = {"dosing", "emdr"}


def in_session(context: WriteContext, mine: Booking, other: Booking, shared: str) -> bool:
    """Whether `other` and this booking are a dosing session and the EMDR session inside it,
    for one patient whose protocol opens its window at once (0 h); only the patient and the
    room may be shared."""
    if not shared.startswith(("Patient/", "Location/")):
        return False
    if {mine.session_type, other.session_type} != IN_SESSION_PAIR:
        return False
    if mine.patient is None or mine.patient != other.patient:
        return False
    dosing, emdr = (mine, other) if mine.session_type == "dosing" else (other, mine)
    assert dosing.start and dosing.end and emdr.start and emdr.end
    if not (dosing.start <= emdr.start and emdr.end <= dosing.end):
        return False
    try:
        protocol, _ = course(context, mine.patient)
    except FHIRError:
        return False  # no course (any more): no exception, the overlap is refused
    return protocol.window.start == 0


def check_overlap(context: WriteContext, mine: Booking) -> None:
    """409 naming the participant that is booked elsewhere at the time (the caller holds the
    participants' locks). Every practice's Appointments count (a practitioner or room may
    serve two); one the caller cannot see is named by its time only. A PractitionerRole is
    its Practitioner; a lapsed `$hold` holds no time."""
    assert mine.start is not None and mine.end is not None
    base = context.interactions.settings.canonical_base
    now = utcnow()
    for index, reference in mine.actors:
        booked = booked_as(context, reference)
        for found in held_before(context, names_for(context, booked), mine.end):
            if found.get("id") == mine.id or not found.get("end"):
                continue
            if hold_lapsed(found, base, now):
                continue
            other = booking(found, None, base, strict=False)
            if not other.overlaps(mine) or in_session(context, mine, other, booked):
                continue
            period = f"from {format_instant(other.start)} to {format_instant(other.end)}"  # type: ignore[arg-type]
            where = (
                f"in Appointment/{found['id']}"
                if caller_sees(context, "Appointment", str(found["id"]))
                else "elsewhere"
            )
            raise FHIRError(
                409,
                f"Rule {OVERLAP_RULE}: {booked} is booked {where} {period}",
                code="business-rule",
                expression=[f"Appointment.participant[{index}].actor"],
            )
