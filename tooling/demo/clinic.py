"""The demo clinic: practices, staff, rooms and their schedules, and a calendar that gives each
session a free psychiatrist and room (dosing) or therapist (EMDR) on the clinic's clock."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from tooling.demo.codes import (
    LOCATION_TYPE,
    ORGANIZATION_TYPE,
    PSYCHIATRIST,
    PSYCHOTHERAPIST,
    session_type,
)

# The dev issuer's practice users (psychiatrist-a, therapist-a: practice-a; psychiatrist-b:
# practice-b) see these practices' patients on the clinician pages.
PRACTICES = (
    ("practice-a", "North Psychiatry Practice"),
    ("practice-b", "Riverside Trauma Clinic"),
    ("practice-c", "West End Mental Health"),
)
PSYCHIATRISTS = (("demo-dr-okafor", "Okafor", "Ada"), ("demo-dr-haddad", "Haddad", "Samir"))
PSYCHIATRISTS += (("demo-dr-moreau", "Moreau", "Claire"),)
THERAPISTS = (
    ("demo-th-lindqvist", "Lindqvist", "Eva"),
    ("demo-th-mensah", "Mensah", "Kofi"),
    ("demo-th-novak", "Novak", "Jana"),
    ("demo-th-ito", "Ito", "Haruki"),
)
ROOMS = (("demo-room-1", "Infusion room 1"), ("demo-room-2", "Infusion room 2"))
ROOMS += (("demo-room-3", "Treatment room 3"),)
# Dosing sessions start at these wall-clock times (160-minute slots from 09:00 to 17:00).
DOSING_TIMES = (time(9), time(11, 40), time(14, 20))
DOSING_SLOT_MINUTES = 160
EMDR_HOURS = tuple(range(9, 17))  # EMDR sessions of 60 minutes, 09:00-17:00
EMDR_MINUTES = 60


def utc(moment: datetime) -> str:
    """An instant as FHIR writes it, in UTC."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def at(day: date, clock: time, zone: ZoneInfo) -> datetime:
    """The clinic's wall-clock `clock` on `day` (aware)."""
    return datetime.combine(day, clock, zone)


def next_weekday(day: date) -> date:
    """`day`, or the Monday after it when it falls on a weekend."""
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return day


def monday_on_or_after(day: date) -> date:
    return day + timedelta(days=(7 - day.weekday()) % 7)


def practice(practice_id: str, name: str) -> dict[str, Any]:
    return {
        "resourceType": "Organization",
        "id": practice_id,
        "identifier": [{"system": "urn:example:practices", "value": practice_id}],
        "active": True,
        "type": [{"coding": [{"system": ORGANIZATION_TYPE, "code": "prov"}]}],
        "name": name,
    }


def practitioner(practitioner_id: str, family: str, given: str) -> dict[str, Any]:
    return {
        "resourceType": "Practitioner",
        "id": practitioner_id,
        "active": True,
        "name": [{"family": family, "given": [given], "prefix": ["Dr"]}],
    }


def role(practitioner_id: str, occupation: dict[str, str], kind: str, base: str) -> dict:
    return {
        "resourceType": "PractitionerRole",
        "id": f"{practitioner_id}-role",
        "active": True,
        "practitioner": {"reference": f"Practitioner/{practitioner_id}"},
        "code": [{"coding": [occupation]}],
        "specialty": [session_type(base, kind)],
    }


def room(room_id: str, name: str) -> dict[str, Any]:
    return {
        "resourceType": "Location",
        "id": room_id,
        "status": "active",
        "name": name,
        "mode": "instance",
        "physicalType": {"coding": [{"system": LOCATION_TYPE, "code": "ro", "display": "Room"}]},
    }


def schedule(actor: str, kind: str, comment: str, base: str) -> dict[str, Any]:
    return {
        "resourceType": "Schedule",
        "id": f"{actor.split('/')[1]}-{kind}",
        "active": True,
        "serviceType": [session_type(base, kind)],
        "actor": [{"reference": actor}],
        "comment": comment,
    }


def clinic_resources(base: str) -> list[tuple[str, dict[str, Any]]]:
    """(service, resource) for every practice, person, role, room and schedule, in order."""
    found: list[tuple[str, dict[str, Any]]] = [
        ("intake", practice(pid, name)) for pid, name in PRACTICES
    ]
    for people, occupation, kind in (
        (PSYCHIATRISTS, PSYCHIATRIST, "dosing"),
        (THERAPISTS, PSYCHOTHERAPIST, "emdr"),
    ):
        for person_id, family, given in people:
            found.append(("scheduling", practitioner(person_id, family, given)))
            found.append(("scheduling", role(person_id, occupation, kind, base)))
            name = f"Dr {given} {family}'s {kind} sessions"
            found.append(("scheduling", schedule(f"Practitioner/{person_id}", kind, name, base)))
    for room_id, name in ROOMS:
        found.append(("scheduling", room(room_id, name)))
        found.append(("scheduling", schedule(f"Location/{room_id}", "dosing", name, base)))
    return found


def schedules() -> list[tuple[str, int]]:
    """(Schedule id, slot minutes) of every schedule the clinic opens slots in."""
    dosing = [f"{p[0]}-dosing" for p in PSYCHIATRISTS] + [f"{r[0]}-dosing" for r in ROOMS]
    emdr = [f"{t[0]}-emdr" for t in THERAPISTS]
    return [(s, DOSING_SLOT_MINUTES) for s in dosing] + [(s, EMDR_MINUTES) for s in emdr]


@dataclass
class Calendar:
    """Who is busy when: gives sessions free staff and rooms, in a stable order."""

    zone: ZoneInfo
    taken: dict[tuple[str, datetime], bool] = field(default_factory=lambda: defaultdict(bool))

    def dosing(self, day: date, psychiatrist: str, room_id: str, prefer: int) -> tuple:
        """(start, psychiatrist, room) on `day`: the preferred time and people first; when all
        are busy, the preferred ones anyway (a recorded session may share them)."""
        order = [DOSING_TIMES[(prefer + i) % len(DOSING_TIMES)] for i in range(3)]
        doctors = [psychiatrist] + [p[0] for p in PSYCHIATRISTS if p[0] != psychiatrist]
        rooms = [room_id] + [r[0] for r in ROOMS if r[0] != room_id]
        for clock in order:
            start = at(day, clock, self.zone)
            doctor = next((d for d in doctors if not self.taken[(d, start)]), None)
            place = next((r for r in rooms if not self.taken[(r, start)]), None)
            if doctor and place:
                self.taken[(doctor, start)] = self.taken[(place, start)] = True
                return start, doctor, place
        return at(day, order[0], self.zone), psychiatrist, room_id

    def therapist_free(self, therapist: str, start: datetime) -> bool:
        return not self.taken[(therapist, start)]

    def take(self, therapist: str, start: datetime) -> None:
        self.taken[(therapist, start)] = True
