"""Who is booked when: the held Appointments of a set of participants in a period."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from services.scheduling.finding import hold_expires_url
from services.scheduling.finding.busy_index import held_appointments
from services.scheduling.schedule_slots import instant
from shared.fhir.references import parse_reference

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from shared.fhir.interactions import Interactions

# Sessions last hours, never a day: one starting a day earlier cannot reach into the period.
_LONGEST = timedelta(days=1)

Busy = dict[str, list[tuple[datetime, datetime]]]


def hold_lapsed(appointment: dict[str, Any], base: str, now: datetime) -> bool:
    """Whether the appointment is a `$hold` whose expiry has passed (it holds no time)."""
    if appointment.get("status") != "pending":
        return False
    for extension in appointment.get("extension") or []:
        if extension.get("url") == hold_expires_url(base):
            moment = extension.get("valueDateTime")
            return isinstance(moment, str) and instant(moment) <= now
    return False


def busy_times(
    interactions: Interactions,
    session: Session,
    actors: list[str],
    since: datetime,
    until: datetime,
    now: datetime,
) -> Busy:
    """Each actor's held periods that may meet [since, until) (lapsed holds left out)."""
    base = interactions.settings.canonical_base
    found = held_appointments(session, actors, since - _LONGEST, until)
    wanted = set(actors)
    busy: Busy = defaultdict(list)
    for appointment in found:
        if not appointment.get("end") or hold_lapsed(appointment, base, now):
            continue
        period = (instant(appointment["start"]), instant(appointment["end"]))
        for participant in appointment.get("participant") or []:
            if participant.get("status") == "declined":
                continue
            reference = (participant.get("actor") or {}).get("reference") or ""
            res_type, res_id = parse_reference(reference)
            if f"{res_type}/{res_id}" in wanted:
                busy[f"{res_type}/{res_id}"].append(period)
    return busy


def is_free(busy: Busy, actor: str, start: datetime, end: datetime) -> bool:
    return not any(s < end and start < e for s, e in busy.get(actor, ()))
