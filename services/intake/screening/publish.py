"""Publishing the screening Questionnaire: idempotent, and a changed definition is a new
version, so responses keep pointing at the version they answered (`url|version`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from services.intake.screening.protocol import questionnaire_definition

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from shared.fhir.interactions import Interactions

# What the server or the publisher sets: left out when comparing definitions.
_VOLATILE = ("id", "meta", "version", "text")


def _content(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k not in _VOLATILE}


def published_versions(
    interactions: Interactions, session: Session, url: str
) -> list[dict[str, Any]]:
    """Every stored Questionnaire with this url."""
    found = interactions.search(
        session, "Questionnaire", [("url", url), ("_count", "1000")], strict=True
    )
    return found.resources


def publish(
    interactions: Interactions, session: Session, definition: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The stored Questionnaire equal to `definition` (the file's by default), written as
    the next version only when no stored version has the same content."""
    if definition is None:
        definition = questionnaire_definition(interactions.settings.canonical_base)
    # Several workers start at once: one publishes, the others then find its version.
    interactions.store.database.lock(session, "publish:Questionnaire")
    stored = published_versions(interactions, session, definition["url"])
    for existing in stored:
        if _content(existing) == _content(definition):
            return existing
    # Versions are counted by the publisher: 1, 2, ... (a hand-set one is not trusted to
    # have changed with the content).
    numbers = [int(q["version"]) for q in stored if str(q.get("version", "")).isdigit()]
    version = str(max(numbers, default=0) + 1)
    created = interactions.create(session, "Questionnaire", {**definition, "version": version})
    assert created.stored is not None and created.stored.resource is not None
    return created.stored.resource
