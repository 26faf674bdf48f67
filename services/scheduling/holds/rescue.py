"""Post-dose rescue thresholds: a vital sign within the observation period after a completed
dose, beyond a threshold of the protocol file, raises a high-severity DetectedIssue naming
the readings for the session's supervising psychiatrist."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from services.scheduling.dosing.window import format_utc
from services.scheduling.holds.doses import ended, session_of
from services.scheduling.holds.issues import RESCUE, monitoring, raise_issue, safety_system
from services.scheduling.holds.sessions import psychiatrist
from services.scheduling.holds.vitals import Reading, reading_of, rescue_problems
from shared.events.reactions import ReactionContext
from shared.fhir.errors import FHIRError


def _earlier(context: ReactionContext, patient: str, since: str, latest: Reading) -> list:
    """The patient's other readings taken since the dose, up to the latest."""
    pairs = [
        ("patient", patient),
        ("status", "final,amended,corrected"),
        ("date", f"ge{since}"),
        ("date", f"le{format_utc(latest.taken)}"),
        ("_count", "200"),
    ]
    found = context.interactions.search(context.session, "Observation", pairs, strict=True)
    readings = [reading_of(observation) for observation in found.resources]
    return [r for r in readings if r is not None and r.reference != latest.reference]


def _supervisor(context: ReactionContext, dose: dict[str, Any]) -> str:
    """The session's psychiatrist, as the issue's detail names it."""
    appointment_id = session_of(dose) or ""
    try:
        stored = context.interactions.store.read(context.session, "Appointment", appointment_id)
    except FHIRError:
        return "the supervising psychiatrist"
    appointment = stored.resource or {}
    index = psychiatrist(appointment)
    if index is None:
        return "the supervising psychiatrist"
    return str(appointment["participant"][index]["actor"]["reference"])


def _raised(context: ReactionContext, reading: Reading) -> bool:
    """Whether this reading already raised a rescue (a redelivered or updated event)."""
    base = context.interactions.settings.canonical_base
    pairs = [("code", f"{safety_system(base)}|{RESCUE}"), ("implicated", reading.reference)]
    found = context.interactions.search(context.session, "DetectedIssue", pairs, strict=True)
    return bool(found.resources)


def check_rescue(
    context: ReactionContext, patient: str, reading: Reading, doses: list[dict[str, Any]]
) -> bool:
    """Raise a rescue issue when due; True when the reading is post-dose (never a hold)."""
    period = timedelta(hours=monitoring().observation_hours)
    for dose in doses:
        end = ended(dose)
        if end is None or not end <= reading.taken <= end + period:
            continue
        earlier = _earlier(context, patient, format_utc(end), reading)
        problems = rescue_problems(reading, earlier, monitoring())
        if problems and not _raised(context, reading):
            named = {r.reference for problem in problems for r in problem.readings}
            supervisor = _supervisor(context, dose)
            raise_issue(
                context.interactions,
                context.session,
                code=RESCUE,
                patient=patient,
                implicated=[*sorted(named), f"MedicationAdministration/{dose['id']}"],
                detail=f"Rescue threshold after the dose, for {supervisor}: "
                + "; ".join(problem.text for problem in problems),
            )
        return True
    return False
