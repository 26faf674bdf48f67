"""The patient's EpisodeOfCare: its status follows screening, never a client's say-so."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from services.intake.enrolment.consents import lock_enrolment
from services.intake.enrolment.known_patient import patient_id_of
from services.intake.screening.episode_status import (
    current_episode,
    is_screening_write,
    screening_write,
    status_reason_url,
)
from services.intake.screening.protocol import rule_table_extension_url
from shared.auth.principal import acting_person, current_principal
from shared.fhir.dates import format_instant, utcnow
from shared.fhir.errors import FHIRError, invalid

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from shared.fhir.interactions import Interactions
    from shared.fhir.rules import WriteContext

# What a clinician may do by hand: end the episode.
CLINICIAN_ENDINGS = ("finished", "cancelled")


def _server_extensions(episode: dict[str, Any], base: str) -> list[dict[str, Any]]:
    """The extensions only the server writes (the deciding rule table)."""
    return [
        e for e in episode.get("extension", []) if e.get("url") == rule_table_extension_url(base)
    ]


def _guard_new(context: WriteContext, resource: dict[str, Any]) -> None:
    if resource.get("status") != "planned":
        raise invalid(
            "EpisodeOfCare.status follows screening: a new episode must be 'planned'",
            ["EpisodeOfCare.status"],
        )
    if resource.get("statusHistory") or _server_extensions(
        resource, context.interactions.settings.canonical_base
    ):
        raise invalid(
            "statusHistory and the rule-table extension are kept by the server",
            ["EpisodeOfCare.statusHistory"],
        )
    patient_id = patient_id_of(resource.get("patient"))
    if patient_id is None:
        return  # the known-patient rule names it
    lock_enrolment(context.interactions, context.session, patient_id)
    episode = current_episode(context.interactions, context.session, patient_id)
    if episode is not None and episode["status"] not in CLINICIAN_ENDINGS:
        raise FHIRError(
            409,
            f"The patient already has an open episode, EpisodeOfCare/{episode['id']} "
            f"({episode['status']}); end it before opening another",
            code="conflict",
            expression=["EpisodeOfCare.patient"],
        )


def guard_episode_status(context: WriteContext) -> None:
    """Write rule: a client creates an episode only as `planned` (one open per patient),
    never moves it to another patient or rewrites what the server recorded, and changes its
    status only to end it (a clinician: a token whose fhirUser is a Practitioner)."""
    if is_screening_write() or context.resource is None:
        return
    resource = context.resource
    previous = context.previous.resource if context.previous is not None else None
    if previous is None:
        _guard_new(context, resource)
        return
    patient_id = patient_id_of(previous.get("patient"))
    if patient_id is not None:
        # Serialised with reviews, consent changes and screenings of the patient, whose own
        # updates of the episode would otherwise fail on a version this write moved on.
        lock_enrolment(context.interactions, context.session, patient_id)
    base = context.interactions.settings.canonical_base
    for element, same in (
        ("patient", resource.get("patient") == previous.get("patient")),
        ("statusHistory", resource.get("statusHistory") == previous.get("statusHistory")),
        ("extension", _server_extensions(resource, base) == _server_extensions(previous, base)),
    ):
        if not same:
            raise invalid(
                f"EpisodeOfCare.{element} is kept by the server and cannot be changed",
                [f"EpisodeOfCare.{element}"],
            )
    status = resource.get("status")
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


def record_clinician_ending(context: WriteContext) -> dict[str, Any]:
    """Enricher: a clinician's ending of an episode closes the current statusHistory entry
    and adds the new one, naming who ended it, as the server's own moves do."""
    resource = context.resource
    previous = context.previous.resource if context.previous is not None else None
    if is_screening_write() or resource is None or previous is None:
        return resource or {}
    if resource.get("status") == previous.get("status"):
        return resource
    now = format_instant(utcnow())
    who = acting_person() if current_principal.get() is not None else "the system"
    history = [dict(h) for h in previous.get("statusHistory", [])]
    if history and "end" not in history[-1].get("period", {}):
        history[-1] = {**history[-1], "period": {**history[-1]["period"], "end": now}}
    reason = {
        "url": status_reason_url(context.interactions.settings.canonical_base),
        "valueString": f"Ended by {who}",
    }
    history.append({"extension": [reason], "status": resource["status"], "period": {"start": now}})
    return {**resource, "statusHistory": history}


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
