"""The outcomes service: builds its FastAPI app from settings."""

from __future__ import annotations

from fastapi import FastAPI

from shared.app import create_service_app
from shared.fhir.catalogue import audit_events, resource
from shared.fhir.everything import everything_operation
from shared.fhir.registry import Registry
from shared.settings import ServiceSettings, settings_class

SERVICE = "outcomes"
OutcomesSettings = settings_class(SERVICE, 8003)


def registry() -> Registry:
    """The resource types the outcomes service serves."""
    registry = Registry(SERVICE)
    registry.add(resource("Observation", owner=SERVICE))
    # Read-only replicas, kept current from intake's and scheduling's events.
    registry.add(resource("Patient", owner="intake", operations=(everything_operation(),)))
    registry.add(resource("EpisodeOfCare", owner="intake"))
    registry.add(resource("Consent", owner="intake"))
    registry.add(resource("QuestionnaireResponse", owner="intake"))  # screenings
    registry.add(resource("Questionnaire", owner="intake"))  # item codes and answer scores
    registry.add(resource("Appointment", owner="scheduling"))
    registry.add(resource("MedicationAdministration", owner="scheduling"))
    registry.add(audit_events(SERVICE))
    return registry


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    """Build the outcomes service; nothing is created before this is called."""
    return create_service_app(settings or OutcomesSettings(), registry())
