"""The Consent write rule: a treatment Consent written, changed or deleted moves the
patient's episode between waitlist and active in the writer's transaction."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from services.intake.enrolment.consents import (
    active_treatment_consent,
    is_treatment,
    lock_enrolment,
    period_ended,
    refuses,
)
from services.intake.enrolment.decision import status_after_consent
from services.intake.enrolment.known_patient import patient_id_of
from services.intake.screening.episode_status import (
    current_episode,
    move_episode,
    recorded_rule_table,
)
from services.intake.screening.evaluation import EVALUATED, evaluate
from services.intake.screening.protocol import rule_table, screening_url
from shared.fhir.dates import utcnow

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from shared.fhir.interactions import Interactions
    from shared.fhir.rules import WriteContext


def screened_status(interactions: Interactions, session: Session, patient_id: str) -> str | None:
    """The status the newest evaluated screening response implies under today's rule table
    (consent aside: the caller decides that)."""
    pairs = [
        ("patient", f"Patient/{patient_id}"),
        ("status", ",".join(EVALUATED)),
        ("_sort", "-_lastUpdated"),
        ("_count", "50"),
    ]
    url = screening_url(interactions.settings.canonical_base)
    found = interactions.search(session, "QuestionnaireResponse", pairs, strict=True)
    for response in found.resources:
        if str(response.get("questionnaire", "")).split("|")[0] == url:
            return evaluate(response, rule_table(), consent_active=True).episode_status
    return None


def _why(res_id: str | None, consent: dict[str, Any] | None, started: bool) -> str:
    """The reason recorded on the episode's new statusHistory entry."""
    name = f"Consent/{res_id}"
    if started:
        return f"Treatment consent {name} is in force"
    if consent is None:
        return f"Treatment consent withdrawn: {name} was deleted"
    if consent.get("status") != "active":
        return f"Treatment consent withdrawn: {name} is {consent.get('status')}"
    if refuses(consent):
        return f"Treatment refused: {name} denies (provision.type deny)"
    if period_ended(consent, utcnow()):
        return f"Treatment consent lapsed: the provision.period of {name} has ended"
    return f"Treatment consent withdrawn: {name} no longer applies (its scope or patient changed)"


def _follow(context: WriteContext, patient_id: str) -> None:
    """Move the patient's episode as the consent now written decides."""
    interactions, session = context.interactions, context.session
    lock_enrolment(interactions, session, patient_id)
    episode = current_episode(interactions, session, patient_id)
    if episode is None:
        return
    written = (context.res_id, context.resource)
    in_force = active_treatment_consent(interactions, session, patient_id, written) is not None
    screened = screened_status(interactions, session, patient_id)
    status = status_after_consent(episode["status"], screened, in_force)
    if status == episode["status"]:
        return
    reason = _why(context.res_id, context.resource, started=status == "active")
    version = recorded_rule_table(episode, interactions.settings.canonical_base)
    move_episode(interactions, session, episode, status, version, reason)


def consent_rule(context: WriteContext) -> None:
    """Write rule on Consent: only treatment Consents (before or after the write) count;
    the episode of each patient they name follows the consent state as written."""
    previous = context.previous.resource if context.previous is not None else None
    concerned = [c for c in (previous, context.resource) if c is not None and is_treatment(c)]
    patients = {patient_id_of(c.get("patient")) for c in concerned}
    for patient_id in sorted(p for p in patients if p is not None):
        _follow(context, patient_id)
