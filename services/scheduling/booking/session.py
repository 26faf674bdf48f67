"""An Appointment as the booking rules read it: its session type, period and participants."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.scheduling.schedule_slots import instant
from services.scheduling.session_types import session_type_codes, session_type_system
from shared.fhir.errors import invalid
from shared.fhir.references import parse_reference

# Statuses that hold the participants' time (proposed does not).
HOLDING = ("booked", "pending", "arrived", "checked-in")
# Statuses of a session that takes place (or did): a dosing session in one passed the dosing
# rules on entering it.
TAKES_PLACE = ("booked", "pending", "checked-in", "arrived", "fulfilled")
# FHIR R4 app-3: only these statuses may lack start and end.
UNTIMED = ("proposed", "cancelled", "waitlist")
# Statuses of a session that did not or will not take place.
CANCELLED = ("cancelled", "noshow", "entered-in-error")
# The kinds of participant that cannot be in two places at once.
BOOKABLE = ("Patient", "Practitioner", "Location")
# A PractitionerRole participant books its Practitioner (resolved by the rules).
ROLE = "PractitionerRole"


@dataclass(frozen=True)
class Booking:
    """The parts of an Appointment the rules look at."""

    id: str | None
    status: str
    session_type: str | None
    start: datetime | None
    end: datetime | None
    # (index in Appointment.participant, "Type/id") of each Patient, Practitioner,
    # PractitionerRole and Location.
    actors: tuple[tuple[int, str], ...]

    @property
    def holds_time(self) -> bool:
        return self.status in HOLDING and self.start is not None and self.end is not None

    @property
    def patient(self) -> str | None:
        found = [ref for _, ref in self.actors if ref.startswith("Patient/")]
        return found[0] if found else None

    def entered(self, previous: Booking | None) -> bool:
        """Whether this write takes the session into a status in which it takes place (from
        none, or from proposed, waitlist, cancelled...), or, in one, moves its start,
        shortens it, gives it to another patient or makes it a dosing session: the writes
        that must pass the dosing rules. A note, a status moving on (arrived, fulfilled) or
        a longer observation (a later end) cannot break a rule it passed."""
        if self.status not in TAKES_PLACE:
            return False
        if previous is None or previous.status not in TAKES_PLACE:
            return True
        if (self.start, self.patient, self.session_type) != (
            previous.start,
            previous.patient,
            previous.session_type,
        ):
            return True
        return self.end is None or previous.end is None or self.end < previous.end

    def overlaps(self, other: Booking) -> bool:
        assert self.start and self.end and other.start and other.end
        return other.start < self.end and self.start < other.end


def session_type(appointment: dict[str, Any], base: str, *, strict: bool = True) -> str | None:
    """The session-type code of serviceType/appointmentType; 422 naming an unknown one
    (a stored Appointment, not `strict`, just has none)."""
    system, known = session_type_system(base), session_type_codes(base)
    concepts = [
        (f"Appointment.serviceType[{i}]", c)
        for i, c in enumerate(appointment.get("serviceType") or [])
    ]
    concepts.append(("Appointment.appointmentType", appointment.get("appointmentType")))
    found: set[str] = set()
    for where, concept in concepts:
        for index, coding in enumerate((concept or {}).get("coding") or []):
            if coding.get("system") != system:
                continue
            code = coding.get("code")
            if code not in known:
                if not strict:
                    continue
                raise invalid(
                    f"Unknown session type '{code}' (known: {', '.join(known)})",
                    [f"{where}.coding[{index}]"],
                )
            found.add(code)
    if len(found) > 1 and strict:
        raise invalid(
            f"An Appointment is one session type, not {', '.join(sorted(found))}",
            ["Appointment.serviceType", "Appointment.appointmentType"],
        )
    return sorted(found)[0] if found else None


def _actors(appointment: dict[str, Any]) -> tuple[tuple[int, str], ...]:
    found = []
    for index, participant in enumerate(appointment.get("participant") or []):
        if participant.get("status") == "declined":
            continue  # a participant who declined does not attend
        reference = (participant.get("actor") or {}).get("reference") or ""
        res_type, res_id = parse_reference(reference)
        if (res_type in BOOKABLE or res_type == ROLE) and res_id:
            found.append((index, f"{res_type}/{res_id}"))
    return tuple(found)


def booking(
    appointment: dict[str, Any], res_id: str | None, base: str, *, strict: bool = True
) -> Booking:
    """Read an Appointment; 422 for an unknown session type when `strict` (a write)."""
    start, end = appointment.get("start"), appointment.get("end")
    return Booking(
        id=res_id or appointment.get("id"),
        status=str(appointment.get("status") or ""),
        session_type=session_type(appointment, base, strict=strict),
        start=instant(start) if isinstance(start, str) else None,
        end=instant(end) if isinstance(end, str) else None,
        actors=_actors(appointment),
    )
