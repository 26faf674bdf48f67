"""What intake publishes at start: the screening Questionnaire and the contraindication
CodeSystem (versioned by the shared publication seam)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from services.intake.screening.protocol import (
    code_system,
    pcl5_response_code_system,
    questionnaire_definition,
    rule_table,
    screening_url,
)
from shared.fhir.errors import invalid
from shared.fhir.publication import publish

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from shared.fhir.interactions import Interactions
    from shared.fhir.rules import WriteContext
    from shared.settings import ServiceSettings


def definitions(settings: ServiceSettings) -> list[dict[str, Any]]:
    """Intake's published definitions: the Questionnaire and its PCL-5 answer codes (numbered
    by the publisher) and the rule keys as a CodeSystem (versioned as the rule table is)."""
    questionnaire = questionnaire_definition(settings.canonical_base)
    return [
        questionnaire,
        code_system(settings.canonical_base, rule_table()),
        pcl5_response_code_system(questionnaire),
    ]


def publish_screening(interactions: Interactions, session: Session) -> dict[str, Any]:
    """The stored screening Questionnaire of the file's definition (published if need be)."""
    definition = questionnaire_definition(interactions.settings.canonical_base)
    return publish(interactions, session, definition)


def guard_published_questionnaire(context: WriteContext) -> None:
    """Write rule on Questionnaire: the screening form is intake's to publish, from its file;
    a client creating, changing or deleting a version of it would change what responses mean."""
    url = screening_url(context.interactions.settings.canonical_base)
    previous = context.previous.resource if context.previous is not None else None
    touched = [r.get("url") for r in (context.resource, previous) if r is not None]
    if url in touched:
        raise invalid(
            f"{url} is published by intake from services/intake/protocols; "
            "change the definition file instead",
            ["Questionnaire.url"],
        )
