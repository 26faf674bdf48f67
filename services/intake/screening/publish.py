"""What intake publishes at start: the screening Questionnaire and the contraindication
CodeSystem (versioned by the shared publication seam)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from services.intake.screening.protocol import (
    code_system,
    pcl5_response_code_system,
    questionnaire_definition,
    rule_table,
)
from shared.fhir.publication import publish

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from shared.fhir.interactions import Interactions
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
