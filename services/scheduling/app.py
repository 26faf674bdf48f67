"""The scheduling service: builds its FastAPI app from settings."""

from __future__ import annotations

from fastapi import FastAPI

from services.scheduling.booking.rule import check_appointment
from services.scheduling.dosing.administration import check_dose, stamp_window
from services.scheduling.dosing.care_plan import check_care_plan, stamp_care_plan
from services.scheduling.dosing.operation import plasticity_window_operation
from services.scheduling.dosing.per_kg import stamp_dose_per_kg
from services.scheduling.dosing.protocol import dosing_protocols
from services.scheduling.finding.emdr_window import check_emdr_window
from services.scheduling.finding.operations import finding_operations
from services.scheduling.finding.stamp import stamp_opened_by
from services.scheduling.finding.sweeper import run_hold_sweeper
from services.scheduling.generate_slots import generate_slots_operation
from services.scheduling.holds.hold import react_to_vital_sign
from services.scheduling.holds.release import release_hold_operation
from services.scheduling.holds.session_rule import check_session
from services.scheduling.reactions import cancel_appointments_of_deleted_patient
from services.scheduling.replanning import APPOINTMENT_RULES, REACTIONS, replan_after_dose
from services.scheduling.session_types import session_types
from services.scheduling.settings import SchedulingSettings
from services.scheduling.slot_rules import check_slot
from shared.app import create_service_app
from shared.fhir.catalogue import audit_events, resource
from shared.fhir.everything import everything_operation
from shared.fhir.publication import publish_at_start
from shared.fhir.registry import Registry
from shared.settings import ServiceSettings

SERVICE = "scheduling"
__all__ = ["SchedulingSettings", "create_app", "registry"]


def registry() -> Registry:
    """The resource types the scheduling service serves."""
    # A malformed protocol file stops the start here, naming the part at fault.
    dosing_protocols()
    registry = Registry(SERVICE)
    # Booking rules (session types, dosing sessions, no double-booking, slots), the EMDR
    # window rule, then the follow-up writes of re-planning and Encounters; $find, $hold and
    # $book (finding/).
    registry.add(
        resource(
            "Appointment",
            owner=SERVICE,
            # The EMDR window rule after the booking rule; its enricher records the dose.
            rules=(check_appointment, check_emdr_window, *APPOINTMENT_RULES),
            enrichers=(stamp_opened_by,),
            operations=(release_hold_operation(), *finding_operations()),
        )
    )
    registry.add(
        resource(
            "MedicationAdministration",
            owner=SERVICE,
            rules=(check_dose, check_session, replan_after_dose),
            enrichers=(stamp_window, stamp_dose_per_kg),
            operations=(plasticity_window_operation(),),
        )
    )
    registry.add(
        resource("CarePlan", owner=SERVICE, rules=(check_care_plan,), enrichers=(stamp_care_plan,))
    )
    # Who works where, in which rooms, and when they are free; none of it is patient data
    # except the Encounter (Patient compartment).
    registry.add(resource("Practitioner", owner=SERVICE))
    registry.add(resource("PractitionerRole", owner=SERVICE))
    registry.add(resource("Location", owner=SERVICE))
    registry.add(resource("Schedule", owner=SERVICE, operations=(generate_slots_operation(),)))
    registry.add(resource("Slot", owner=SERVICE, rules=(check_slot,)))
    registry.add(resource("Encounter", owner=SERVICE))
    # Published by the service (the session types), read-only to clients.
    registry.add(resource("CodeSystem", owner=SERVICE, api_writable=False))
    # Read-only replicas, kept current from intake's and outcomes' events.
    registry.add(resource("Patient", owner="intake", operations=(everything_operation(),)))
    registry.add(resource("EpisodeOfCare", owner="intake"))
    registry.add(resource("Consent", owner="intake"))
    # The screening's body weight, until a measured one arrives from outcomes.
    registry.add(resource("QuestionnaireResponse", owner="intake"))
    # Vital signs and body weight (pre-dose blood pressure holds, rescue thresholds, mg/kg).
    registry.add(resource("Observation", owner="outcomes"))
    registry.react("fhir.Patient.deleted", cancel_appointments_of_deleted_patient)
    # Pre-dose blood pressure holds and post-dose rescue thresholds (holds/).
    registry.react("fhir.Observation.created", react_to_vital_sign)
    registry.react("fhir.Observation.updated", react_to_vital_sign)
    # Holds and rescues; intake's DetectedIssues share the topic name fhir.DetectedIssue.
    registry.add(resource("DetectedIssue", owner=SERVICE))
    # Sessions follow the enrolment (replanning/).
    for event_type, reaction in REACTIONS:
        registry.react(event_type, reaction)
    registry.add(audit_events(SERVICE))
    return registry


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    """Build the scheduling service; nothing is created before this is called."""
    if not isinstance(settings, SchedulingSettings):
        # Shared settings (or none) gain scheduling's own, from SCHEDULING_* or the defaults.
        given = settings.model_dump(exclude={"service_name", "port"}) if settings else {}
        settings = SchedulingSettings(**given)
    app = create_service_app(settings, registry())
    publish_at_start(app, lambda s: [session_types(s.canonical_base)])
    # Lapsed holds cancelled in the background (finding/sweeper.py).
    run_hold_sweeper(app, settings.hold_sweep_interval_s)
    return app
