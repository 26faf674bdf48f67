"""Cancel a patient's future programme sessions, each a new Appointment version (its event)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from services.scheduling.replanning.sessions import service_type_token
from shared.fhir.dates import format_instant, utcnow

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from shared.fhir.interactions import Interactions

# Sessions not yet begun that cancelling frees (waitlisted ones hold no slot).
_CANCELLABLE = ("proposed", "pending", "booked")


def cancel_future_sessions(
    interactions: Interactions, session: Session, patient_id: str, reason: str
) -> int:
    """Cancel the patient's programme sessions starting after now; returns how many."""
    base = interactions.settings.canonical_base
    query = [
        ("patient", f"Patient/{patient_id}"),
        ("status", ",".join(_CANCELLABLE)),
        ("service-type", service_type_token(base)),
        ("date", f"gt{format_instant(utcnow())}"),
        ("_count", "200"),
    ]
    cancelled = 0
    while True:
        found = interactions.search(session, "Appointment", query, strict=True).resources
        if not found:
            return cancelled
        for hit in found:
            # Cancelling a dosing session re-proposes its EMDR sessions (a write rule), so a
            # hit may have changed since the search: write over the current version.
            stored = interactions.store.read(session, "Appointment", hit["id"], lock=True)
            current = stored.resource
            if current is None or current.get("status") not in _CANCELLABLE:
                continue
            body = {**current, "status": "cancelled", "cancelationReason": {"text": reason}}
            interactions.update(session, "Appointment", hit["id"], body, if_match=stored.version_id)
            cancelled += 1
