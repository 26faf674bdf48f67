"""The scheduling service: builds its FastAPI app from settings."""

from __future__ import annotations

from fastapi import FastAPI

from services.scheduling.dosing.administration import check_dose, stamp_window
from services.scheduling.dosing.care_plan import check_care_plan, stamp_care_plan
from services.scheduling.dosing.operation import plasticity_window_operation
from services.scheduling.dosing.protocol import dosing_protocols
from services.scheduling.reactions import cancel_appointments_of_deleted_patient
from shared.app import create_service_app
from shared.fhir.catalogue import audit_events, resource
from shared.fhir.everything import everything_operation
from shared.fhir.registry import Registry
from shared.settings import ServiceSettings, settings_class

SERVICE = "scheduling"
SchedulingSettings = settings_class(SERVICE, 8002)


def registry() -> Registry:
    """The resource types the scheduling service serves."""
    # A malformed protocol file stops the start here, naming the part at fault.
    dosing_protocols()
    registry = Registry(SERVICE)
    registry.add(resource("Appointment", owner=SERVICE))
    registry.add(
        resource(
            "MedicationAdministration",
            owner=SERVICE,
            rules=(check_dose,),
            enrichers=(stamp_window,),
            operations=(plasticity_window_operation(),),
        )
    )
    registry.add(
        resource("CarePlan", owner=SERVICE, rules=(check_care_plan,), enrichers=(stamp_care_plan,))
    )
    # Read-only replicas, kept current from intake's events.
    registry.add(resource("Patient", owner="intake", operations=(everything_operation(),)))
    registry.add(resource("EpisodeOfCare", owner="intake"))
    registry.add(resource("Consent", owner="intake"))
    registry.react("fhir.Patient.deleted", cancel_appointments_of_deleted_patient)
    registry.add(audit_events(SERVICE))
    return registry


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    """Build the scheduling service; nothing is created before this is called."""
    return create_service_app(settings or SchedulingSettings(), registry())
