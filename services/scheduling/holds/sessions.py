"""Dosing sessions: Appointments whose serviceType is `dosing` in the session-type
CodeSystem. The session's psychiatrist is its first Practitioner participant (nurses and
rooms take part as PractitionerRole, Location or Device, never as Practitioner)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from services.scheduling.dosing.window import format_utc
from services.scheduling.session_types import session_type_system

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from services.scheduling.settings import SchedulingSettings
    from shared.fhir.interactions import Interactions

DOSING = "dosing"


def is_dosing(appointment: dict[str, Any], base: str) -> bool:
    system = session_type_system(base)
    return any(
        coding.get("system") == system and coding.get("code") == DOSING
        for concept in appointment.get("serviceType") or []
        for coding in concept.get("coding") or []
    )


def actors(appointment: dict[str, Any], prefix: str) -> list[int]:
    """The indexes of the participants whose actor reference starts with `prefix`."""
    return [
        index
        for index, participant in enumerate(appointment.get("participant") or [])
        if str((participant.get("actor") or {}).get("reference", "")).startswith(prefix)
    ]


def psychiatrist(appointment: dict[str, Any]) -> int | None:
    """The index of the session's psychiatrist participant (None: none named)."""
    found = actors(appointment, "Practitioner/")
    return found[0] if found else None


def has_patient(appointment: dict[str, Any], patient: str) -> bool:
    """Whether `Patient/<id>` takes part in the session."""
    return any(
        (participant.get("actor") or {}).get("reference") == patient
        for participant in appointment.get("participant") or []
    )


def sessions_on_day(
    interactions: Interactions, session: Session, patient: str, moment: datetime
) -> list[dict[str, Any]]:
    """The patient's booked or arrived dosing sessions on the clinic's day of `moment`
    (arrived too: the pre-dose reading is often taken once the patient is in)."""
    settings: SchedulingSettings = interactions.settings  # type: ignore[assignment]
    local = moment.astimezone(settings.clinic_zone())
    start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    # Wall-clock arithmetic: the next local midnight, 23 or 25 hours on a clock change.
    end = start + timedelta(days=1)
    base = settings.canonical_base
    pairs = [
        ("patient", patient),
        ("status", "booked,arrived"),
        ("service-type", f"{session_type_system(base)}|{DOSING}"),
        ("date", f"ge{format_utc(start)}"),
        ("date", f"lt{format_utc(end)}"),
        ("_count", "20"),
    ]
    return interactions.search(session, "Appointment", pairs, strict=True).resources
