"""The intake service: builds its FastAPI app from settings."""

from __future__ import annotations

from fastapi import FastAPI

from services.intake.ehr_import import import_operation
from services.intake.enrolment.consent_rule import consent_rule
from services.intake.enrolment.known_patient import known_patient
from services.intake.enrolment.review import review_operation
from services.intake.enrolment.summary import enrolment_operation
from services.intake.screening.episode import (
    guard_episode_status,
    record_clinician_ending,
    referral_rule,
)
from services.intake.screening.publish import definitions, guard_published_questionnaire
from services.intake.screening.rule import screening_rule
from services.intake.settings import IntakeSettings
from shared.app import create_service_app
from shared.fhir.catalogue import audit_events, resource
from shared.fhir.everything import everything_operation
from shared.fhir.publication import publish_at_start
from shared.fhir.registry import Registry
from shared.settings import ServiceSettings

SERVICE = "intake"


def registry() -> Registry:
    """The resource types the intake service serves."""
    registry = Registry(SERVICE)
    registry.add(
        resource(
            "Patient",
            owner=SERVICE,
            operations=(everything_operation(), import_operation(), enrolment_operation()),
        )
    )
    registry.add(resource("Organization", owner=SERVICE))
    registry.add(resource("ServiceRequest", owner=SERVICE, rules=(referral_rule,)))
    registry.add(resource("Questionnaire", owner=SERVICE, rules=(guard_published_questionnaire,)))
    # Published by intake itself (the contraindication codes): read-only to clients.
    registry.add(resource("CodeSystem", owner=SERVICE, api_writable=False))
    registry.add(resource("QuestionnaireResponse", owner=SERVICE, rules=(screening_rule,)))
    registry.add(resource("DetectedIssue", owner=SERVICE))
    registry.add(resource("Consent", owner=SERVICE, rules=(known_patient, consent_rule)))
    registry.add(
        resource(
            "EpisodeOfCare",
            owner=SERVICE,
            rules=(known_patient, guard_episode_status),
            enrichers=(record_clinician_ending,),
            operations=(review_operation(),),
        )
    )
    registry.add(audit_events(SERVICE))
    return registry


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    """Build the intake service; nothing is created before this is called."""
    app = create_service_app(settings or IntakeSettings(), registry())
    publish_at_start(app, definitions)
    return app
