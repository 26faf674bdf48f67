"""Searches the booking rules run: Appointments of a participant, the patient's course."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from services.scheduling.dosing.care_plan import care_plan_protocol
from services.scheduling.dosing.protocol import Protocol
from shared.fhir.errors import invalid

if TYPE_CHECKING:
    from shared.fhir.rules import WriteContext

PARTICIPANT = "Appointment.participant"


def appointments(context: WriteContext, pairs: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Every Appointment matching `pairs`, all pages (the rule must see each one)."""
    page = context.interactions.settings.max_page_size
    found: list[dict[str, Any]] = []
    while True:
        query = [*pairs, ("_sort", "date"), ("_count", str(page)), ("_offset", str(len(found)))]
        result = context.interactions.search(context.session, "Appointment", query, strict=True)
        found += result.resources
        if not result.query.more:
            return found


def course(context: WriteContext, patient: str) -> tuple[Protocol, dict[str, Any]]:
    """The dosing protocol of the patient's active CarePlan and that plan; 422 when the
    patient has none (a course is agreed at consultation, before dosing is booked)."""
    pairs = [("patient", patient), ("status", "active"), ("_count", "100")]
    plans = context.interactions.search(context.session, "CarePlan", pairs, strict=True).resources
    base = context.interactions.settings.canonical_base
    found = [(p, plan) for plan in plans if (p := care_plan_protocol(plan, base)) is not None]
    if not found:
        raise invalid(
            f"A dosing session needs an active CarePlan of {patient} naming a dosing protocol",
            [PARTICIPANT],
        )
    if len(found) > 1:
        names = ", ".join(f"CarePlan/{plan['id']}" for _, plan in found)
        raise invalid(
            f"{patient} has {len(found)} active dosing CarePlans ({names}): end all but one",
            [PARTICIPANT],
        )
    return found[0]


def episode_statuses(context: WriteContext, patient: str) -> list[str]:
    """The statuses of the patient's EpisodeOfCare replicas."""
    pairs = [("patient", patient), ("_count", "100")]
    found = context.interactions.search(context.session, "EpisodeOfCare", pairs, strict=True)
    return [str(episode.get("status")) for episode in found.resources]
