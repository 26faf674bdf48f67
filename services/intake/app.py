"""The intake service: builds its FastAPI app from settings."""

from __future__ import annotations

from fastapi import FastAPI

from services.intake.ehr_import import import_operation
from services.intake.settings import IntakeSettings
from shared.app import create_service_app
from shared.fhir.catalogue import audit_events, resource
from shared.fhir.everything import everything_operation
from shared.fhir.registry import Registry
from shared.settings import ServiceSettings

SERVICE = "intake"


def registry() -> Registry:
    """The resource types the intake service serves."""
    registry = Registry(SERVICE)
    registry.add(
        resource("Patient", owner=SERVICE, operations=(everything_operation(), import_operation()))
    )
    registry.add(audit_events(SERVICE))
    return registry


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    """Build the intake service; nothing is created before this is called."""
    return create_service_app(settings or IntakeSettings(), registry())
