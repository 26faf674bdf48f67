"""What scheduling does when intake's events arrive."""

from __future__ import annotations

from shared.events.reactions import ReactionContext
from shared.fhir.dates import format_instant, utcnow

# Appointment states that still hold a slot for the patient.
_OPEN = "proposed,pending,booked,waitlist"
_CANCELLATION = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/appointment-cancellation-reason",
            "code": "pat",
            "display": "Patient",
        }
    ],
    "text": "The patient's record was deleted at intake",
}


def cancel_appointments_of_deleted_patient(context: ReactionContext) -> None:
    """A patient deleted at intake keeps no future session booked here: each open
    Appointment from now on is cancelled (a new version, with its event)."""
    _, patient_id = context.subject
    query = [
        ("patient", patient_id),
        ("status", _OPEN),
        ("date", f"ge{format_instant(utcnow())}"),
        ("_count", "200"),
    ]
    interactions = context.interactions
    while True:
        # Each round cancels what it found, so the next finds only what is left.
        found = interactions.search(context.session, "Appointment", query, strict=True)
        if not found.resources:
            return
        for appointment in found.resources:
            cancelled = {**appointment, "status": "cancelled", "cancelationReason": _CANCELLATION}
            interactions.update(
                context.session,
                "Appointment",
                appointment["id"],
                cancelled,
                if_match=int(appointment["meta"]["versionId"]),
            )
