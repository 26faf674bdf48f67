"""Who may give a session type and which rooms host it: the active Schedules whose
serviceType names it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared.fhir.references import parse_reference

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from shared.fhir.interactions import Interactions

PEOPLE = ("Practitioner", "PractitionerRole")


@dataclass(frozen=True)
class Calendar:
    """One Schedule: its id and the participant it books ("Practitioner/x", "Location/y")."""

    schedule: str
    actor: str


def _all(interactions: Interactions, session: Session, res_type: str, pairs: list) -> list[dict]:
    """Every match of a search, all pages."""
    page = interactions.settings.max_page_size
    found: list[dict[str, Any]] = []
    while True:
        query = [*pairs, ("_count", str(page)), ("_offset", str(len(found))), ("_total", "none")]
        result = interactions.search(session, res_type, query, strict=True)
        found += result.resources
        if not result.query.more:
            return found


def _participant(interactions: Interactions, session: Session, actor: str) -> str | None:
    """The bookable participant of a Schedule's actor: a PractitionerRole books its
    Practitioner (the overlap rule knows Practitioners, not roles)."""
    res_type, res_id = parse_reference(actor)
    if res_type != "PractitionerRole" or res_id is None:
        return actor
    role = interactions.search(session, "PractitionerRole", [("_id", res_id)], strict=True)
    for found in role.resources:
        if found.get("active", True) is not False:
            return (found.get("practitioner") or {}).get("reference")
    return None


def calendars(
    interactions: Interactions, session: Session, service_type: str
) -> tuple[list[Calendar], list[Calendar]]:
    """(practitioners', rooms') active Schedules offering `service_type` (system|code)."""
    # Filtered and ordered here: `active:not` and `_sort` cost the search more than 60 rows.
    pairs = [("service-type", service_type)]
    people: list[Calendar] = []
    rooms: list[Calendar] = []
    found = _all(interactions, session, "Schedule", pairs)
    for schedule in sorted(found, key=lambda s: str(s["id"])):
        if schedule.get("active") is False:
            continue
        for actor in schedule.get("actor") or []:
            reference = (actor or {}).get("reference") or ""
            res_type, _ = parse_reference(reference)
            if res_type in PEOPLE:
                booked = _participant(interactions, session, reference)
                if booked:
                    people.append(Calendar(schedule["id"], booked))
            elif res_type == "Location":
                rooms.append(Calendar(schedule["id"], reference))
    return people, rooms
