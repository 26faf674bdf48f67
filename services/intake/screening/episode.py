"""The patient's EpisodeOfCare: its status follows screening, never a client's say-so."""

from __future__ import annotations

from typing import TYPE_CHECKING

from services.intake.screening.episode_status import (
    current_episode,
    is_screening_write,
    screening_write,
)
from shared.auth.principal import acting_person, current_principal
from shared.fhir.dates import format_instant, utcnow
from shared.fhir.errors import FHIRError, invalid

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from shared.fhir.interactions import Interactions
    from shared.fhir.rules import WriteContext

# What a clinician may do by hand: end the episode.
CLINICIAN_ENDINGS = ("finished", "cancelled")


def guard_episode_status(context: WriteContext) -> None:
    """Write rule: a client creates an episode only as `planned` and changes its status only
    to end it (a clinician: a token whose fhirUser is a Practitioner); 422 otherwise."""
    if is_screening_write() or context.resource is None:
        return
    status = context.resource.get("status")
    previous = context.previous.resource if context.previous is not None else None
    if previous is None:
        if status != "planned":
            raise invalid(
                "EpisodeOfCare.status follows screening: a new episode must be 'planned'",
                ["EpisodeOfCare.status"],
            )
        return
    if status == previous.get("status"):
        return
    if status not in CLINICIAN_ENDINGS:
        raise invalid(
            "EpisodeOfCare.status follows screening; a client may only end an episode "
            f"({' or '.join(CLINICIAN_ENDINGS)})",
            ["EpisodeOfCare.status"],
        )
    if current_principal.get() is not None and not acting_person().startswith("Practitioner/"):
        raise FHIRError(
            403, "Only a clinician (a Practitioner) may end an episode", code="forbidden"
        )


def open_planned_episode(
    interactions: Interactions, session: Session, patient_id: str, referral_id: str
) -> None:
    """A referred patient not yet screened has a `planned` episode naming the referral
    (unless an episode is already open)."""
    if current_episode(interactions, session, patient_id) is not None:
        return
    now = format_instant(utcnow())
    with screening_write():
        interactions.create(
            session,
            "EpisodeOfCare",
            {
                "resourceType": "EpisodeOfCare",
                "status": "planned",
                "statusHistory": [{"status": "planned", "period": {"start": now}}],
                "patient": {"reference": f"Patient/{patient_id}"},
                "referralRequest": [{"reference": f"ServiceRequest/{referral_id}"}],
                "period": {"start": now},
            },
        )


def referral_rule(context: WriteContext) -> None:
    """Write rule on ServiceRequest: an active referral of a patient opens a planned episode."""
    referral = context.resource
    if referral is None or referral.get("status") != "active" or context.res_id is None:
        return
    parts = (referral.get("subject") or {}).get("reference", "").rstrip("/").split("/")
    if len(parts) >= 2 and parts[-2] == "Patient":
        open_planned_episode(context.interactions, context.session, parts[-1], context.res_id)
