"""Reactions to intake's enrolment: an EpisodeOfCare no longer active, or a treatment Consent
revoked with no active episode left, cancels the patient's future programme sessions.

Intake moves the episode to waitlist in the transaction that revokes the consent, so the
episode's status is the authority; a Consent event only acts once no episode is active
(its episode's event may arrive first or later, on another topic).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from services.scheduling.replanning.cancellation import cancel_future_sessions

if TYPE_CHECKING:
    from shared.events.reactions import ReactionContext

SCOPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/consentscope"
# Why an episode leaves active, as intake's enrolment moves it.
_WHY = {"waitlist": "treatment consent withdrawn", "cancelled": "enrolment cancelled"}
_REVOKED = ("inactive", "rejected", "entered-in-error")


def _patient_id(reference: Any) -> str | None:
    value = reference.get("reference") if isinstance(reference, dict) else None
    if isinstance(value, str) and value.startswith("Patient/"):
        return value.removeprefix("Patient/")
    return None


def _has_active_episode(context: ReactionContext, patient_id: str) -> bool:
    query = [("patient", f"Patient/{patient_id}"), ("status", "active"), ("_count", "1")]
    found = context.interactions.search(context.session, "EpisodeOfCare", query, strict=True)
    return bool(found.resources)


def _last_content(context: ReactionContext) -> dict[str, Any] | None:
    """The replica's newest stored content of the event's subject (before a delete, too)."""
    res_type, res_id = context.subject
    versions, _ = context.interactions.store.history(
        context.session, res_type=res_type, res_id=res_id, count=5
    )
    # By version, not time: a replica keeps the owner's lastUpdated, which a copied or
    # restored replica does not always have in order.
    ordered = sorted(versions, key=lambda v: v.version_id, reverse=True)
    return next((v.resource for v in ordered if v.resource is not None), None)


def episode_changed(context: ReactionContext) -> None:
    """An episode that is not active leaves the patient no future programme session."""
    episode = _last_content(context)
    if episode is None:
        return
    # A deleted episode's last content may still read active.
    status = "deleted" if context.event.deleted else str(episode.get("status"))
    if status == "active":
        return
    patient_id = _patient_id(episode.get("patient"))
    if patient_id is None or _has_active_episode(context, patient_id):
        return
    why = _WHY.get(status)
    reason = f"Enrolment left active: {status}" + (f" ({why})" if why else "")
    cancel_future_sessions(context.interactions, context.session, patient_id, reason)


def _revoked(consent: dict[str, Any], deleted: bool) -> bool:
    provision = consent.get("provision") or {}
    return deleted or consent.get("status") in _REVOKED or provision.get("type") == "deny"


def _is_treatment(consent: dict[str, Any]) -> bool:
    codings = (consent.get("scope") or {}).get("coding") or []
    return any(c.get("system") == SCOPE_SYSTEM and c.get("code") == "treatment" for c in codings)


def consent_changed(context: ReactionContext) -> None:
    """A revoked treatment Consent cancels the sessions once no episode is active."""
    consent = _last_content(context)
    if consent is None or not _is_treatment(consent):
        return
    if not _revoked(consent, context.event.deleted):
        return
    patient_id = _patient_id(consent.get("patient"))
    if patient_id is None or _has_active_episode(context, patient_id):
        return
    reason = "Treatment consent withdrawn; no active enrolment"
    cancel_future_sessions(context.interactions, context.session, patient_id, reason)
