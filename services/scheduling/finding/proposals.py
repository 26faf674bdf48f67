"""Proposed Appointments from free Slots: a qualified practitioner's slot in a period, with a
free room's slot of the same time when rooms keep schedules for the session type."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from services.scheduling.finding.busy import Busy, is_free
from services.scheduling.finding.schedules import Calendar
from services.scheduling.finding.slot_index import free_slots
from services.scheduling.finding.windows import DoseWindow
from services.scheduling.replanning.sessions import opened_by_extension
from services.scheduling.schedule_slots import instant

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from shared.fhir.interactions import Interactions


@dataclass
class Search:
    """One `$find`: who, what, the calendars, who is busy and the proposals so far."""

    patient: str
    concept: dict[str, Any]
    people: list[Calendar]
    rooms: list[Calendar]
    busy: Busy
    dose: DoseWindow | None
    limit: int
    found: list[dict[str, Any]]
    # The referral the sessions answer (Appointment.basedOn), from the active EpisodeOfCare.
    based_on: list[dict[str, Any]] = field(default_factory=list)

    def full(self) -> bool:
        return len(self.found) >= self.limit


def _appointment(
    search: Search, slot: dict[str, Any], who: str, room: tuple[str, str] | None, base: str
) -> dict[str, Any]:
    start = instant(slot["start"])
    actors = [(search.patient, "needs-action"), (who, "accepted")]
    slots = [{"reference": f"Slot/{slot['id']}"}]
    if room is not None:
        actors.append((room[0], "accepted"))
        slots.append({"reference": f"Slot/{room[1]}"})
    body: dict[str, Any] = {
        "resourceType": "Appointment",
        "status": "proposed",
        "serviceType": [search.concept],
        "start": slot["start"],
        "end": slot["end"],
        "slot": slots,
        "participant": [
            {"actor": {"reference": a}, "required": "required", "status": s} for a, s in actors
        ],
    }
    if search.based_on:
        body["basedOn"] = search.based_on
    if search.dose is not None:
        offset = search.dose.offset_hours(start)
        body["extension"] = [opened_by_extension(base, search.dose.dose, offset)]
    return body


def _schedule(slot: dict[str, Any]) -> str:
    return str(slot["schedule"]["reference"]).removeprefix("Schedule/")


def _room_slots(
    interactions: Interactions, session: Session, search: Search, first: datetime, last: datetime
) -> dict[datetime, list[tuple[dict[str, Any], datetime]]]:
    """The rooms' free slots starting in [first, last] and their ends, by start instant."""
    by_start: dict[datetime, list[tuple[dict[str, Any], datetime]]] = {}
    if not search.rooms:
        return by_start
    schedules = [c.schedule for c in search.rooms]
    until = last + timedelta(seconds=1)
    offset, more = 0, True
    while more:
        page, more = free_slots(session, schedules, first, until, 500, offset)
        offset += len(page)
        for slot in page:
            by_start.setdefault(instant(slot["start"]), []).append((slot, instant(slot["end"])))
    return by_start


def collect(
    interactions: Interactions, session: Session, search: Search, since: datetime, until: datetime
) -> None:
    """Add proposals for free slots starting in [since, until), by start, until full."""
    base = interactions.settings.canonical_base
    actor_of = {c.schedule: c.actor for c in search.people}
    room_of = {c.schedule: c.actor for c in search.rooms}
    chunk = max(4 * search.limit, 50)
    # A room proposed at a time is not proposed again with another practitioner then.
    taken: set[str] = set()
    offset, more = 0, True
    while more and not search.full():
        page, more = free_slots(session, list(actor_of), since, until, chunk, offset)
        offset += len(page)
        if not page:
            return
        last = instant(page[-1]["start"])
        rooms = _room_slots(interactions, session, search, instant(page[0]["start"]), last)
        for slot in page:
            start, end = instant(slot["start"]), instant(slot["end"])
            if search.dose is not None and start < search.dose.window_end < end:
                continue  # runs past the window's end: `$book` would refuse it
            who = actor_of[_schedule(slot)]
            if not (is_free(search.busy, who, start, end)):
                continue
            if not is_free(search.busy, search.patient, start, end):
                continue
            room = None
            if search.rooms:
                fitting = [
                    (room_of[_schedule(s)], s["id"])
                    for s, ends in rooms.get(start, [])
                    if ends == end
                    and s["id"] not in taken
                    and is_free(search.busy, room_of[_schedule(s)], start, end)
                ]
                if not fitting:
                    continue  # no room free at that time: no session
                room = fitting[0]
                taken.add(room[1])
            search.found.append(_appointment(search, slot, who, room, base))
            if search.full():
                return
