"""What outcomes does when intake's screening events arrive: derive the baseline totals."""

from __future__ import annotations

from services.outcomes.baselines.derivation import DERIVING, derive_baselines
from shared.events.reactions import ReactionContext

# Most responses re-scored per round when a patient or a Questionnaire arrives late.
_PAGE = 200


def derive_from_response(context: ReactionContext) -> None:
    """A response created, updated or deleted at intake: its totals follow its current
    version here (read from the replica, so an old event arriving late changes nothing)."""
    _, response_id = context.subject
    derive_baselines(context.session, context.interactions, response_id)


def _rederive(context: ReactionContext, condition: tuple[str, str]) -> None:
    query = [condition, ("status", ",".join(DERIVING)), ("_count", str(_PAGE))]
    offset = 0
    while True:
        pairs = [*query, ("_offset", str(offset))] if offset else query
        session, interactions = context.session, context.interactions
        found = interactions.search(session, "QuestionnaireResponse", pairs, strict=True)
        for response in found.resources:
            derive_baselines(session, interactions, response["id"])
        if len(found.resources) < _PAGE:
            return
        offset += _PAGE


def derive_for_patient(context: ReactionContext) -> None:
    """A patient arriving after their screening response: its totals are derived now."""
    _, patient_id = context.subject
    _rederive(context, ("patient", f"Patient/{patient_id}"))


def derive_for_questionnaire(context: ReactionContext) -> None:
    """A Questionnaire arriving after the responses to it: their totals are derived now."""
    data = context.event.data or {}
    url, version = data.get("url"), data.get("version")
    if isinstance(url, str) and isinstance(version, str):
        _rederive(context, ("questionnaire", f"{url}|{version}"))


REACTIONS = (
    ("fhir.QuestionnaireResponse.created", derive_from_response),
    ("fhir.QuestionnaireResponse.updated", derive_from_response),
    ("fhir.QuestionnaireResponse.deleted", derive_from_response),
    ("fhir.Patient.created", derive_for_patient),
    ("fhir.Questionnaire.created", derive_for_questionnaire),
)
