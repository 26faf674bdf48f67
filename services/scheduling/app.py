"""The scheduling service: builds its FastAPI app from settings."""

from __future__ import annotations

from fastapi import FastAPI

from shared.app import create_service_app
from shared.fhir.catalogue import resource
from shared.fhir.registry import Registry
from shared.settings import ServiceSettings, settings_class

SERVICE = "scheduling"
SchedulingSettings = settings_class(SERVICE, 8002)


def registry() -> Registry:
    """The resource types the scheduling service serves."""
    registry = Registry(SERVICE)
    registry.add(resource("Appointment", owner=SERVICE))
    registry.add(resource("MedicationAdministration", owner=SERVICE))
    # Read-only replicas, kept current from intake's events.
    registry.add(resource("Patient", owner="intake"))
    return registry


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    """Build the scheduling service; nothing is created before this is called."""
    return create_service_app(settings or SchedulingSettings(), registry())
