"""The outcomes service: builds its FastAPI app from settings."""

from __future__ import annotations

from fastapi import FastAPI

from services.outcomes.baselines import REACTIONS as BASELINE_REACTIONS
from services.outcomes.baselines.instruments import method_code_system, scoring
from services.outcomes.charts.negotiation import outcome_renderers
from services.outcomes.observations.code_system import measure_code_system
from services.outcomes.observations.measures import outcome_measures
from services.outcomes.observations.rule import check_measures
from services.outcomes.observations.subject import known_subject
from services.outcomes.programme.evidence import window_evidence_operation
from services.outcomes.programme.report import programme_report_operation
from services.outcomes.research.export import research_export_definition, research_export_router
from services.outcomes.settings import OutcomesSettings
from services.outcomes.summary.operation import outcomes_operation
from services.outcomes.timeline.projections import timeline_projections
from services.outcomes.web.routes import install_pages
from shared.app import create_service_app
from shared.fhir.catalogue import audit_events, resource
from shared.fhir.everything import everything_operation
from shared.fhir.publication import publish_at_start
from shared.fhir.registry import Registry
from shared.settings import ServiceSettings

SERVICE = "outcomes"
DEFAULT_CANONICAL_BASE = ServiceSettings.model_fields["canonical_base"].default
__all__ = ["OutcomesSettings", "create_app", "registry"]


def registry(canonical_base: str = DEFAULT_CANONICAL_BASE) -> Registry:
    """The resource types the outcomes service serves, and the timeline tables kept with them
    (their local codes and extensions live under `canonical_base`)."""
    # A malformed measures file stops the start here, naming the part at fault.
    outcome_measures()
    scoring()
    registry = Registry(SERVICE)
    # The measure first (no I/O), then the subject: a missing patient is looked up at intake.
    registry.add(resource("Observation", owner=SERVICE, rules=(check_measures, known_subject)))
    # Published by the service (the local measure codes), read-only to clients.
    registry.add(resource("CodeSystem", owner=SERVICE, api_writable=False))
    # Read-only replicas, kept current from intake's and scheduling's events.
    charts = outcome_renderers(outcome_measures())
    patient_operations = (
        everything_operation(),
        outcomes_operation(canonical_base, charts["outcomes"]),
    )
    registry.add(resource("Patient", owner="intake", operations=patient_operations))
    registry.add(resource("EpisodeOfCare", owner="intake"))
    registry.add(resource("Consent", owner="intake"))
    registry.add(resource("QuestionnaireResponse", owner="intake"))  # screenings
    registry.add(resource("Questionnaire", owner="intake"))  # item codes and answer scores
    registry.add(resource("Appointment", owner="scheduling"))
    registry.add(resource("MedicationAdministration", owner="scheduling"))
    registry.add(resource("Encounter", owner="scheduling"))  # the session a score was taken in
    registry.project(*timeline_projections(canonical_base))
    registry.operations.append(research_export_definition())  # its route: create_app
    # The programme's figures over the timeline tables, as Parameters or charts.
    registry.operations += [
        programme_report_operation(charts["programme-report"]),
        window_evidence_operation(charts["window-evidence"]),
    ]
    # The baseline PHQ-9 and PCL-5 totals follow intake's screening responses (baselines/).
    for event_type, reaction in BASELINE_REACTIONS:
        registry.react(event_type, reaction)
    registry.add(audit_events(SERVICE))
    return registry


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    """Build the outcomes service; nothing is created before this is called."""
    if not isinstance(settings, OutcomesSettings):
        # Shared settings (or none) gain outcomes' own, from OUTCOMES_* or the defaults.
        given = settings.model_dump(exclude={"service_name", "port"}) if settings else {}
        settings = OutcomesSettings(**given)
    app = create_service_app(settings, registry(settings.canonical_base))
    publish_at_start(
        app,
        lambda s: [measure_code_system(s.canonical_base), method_code_system(s.canonical_base)],
    )
    # The clinician pages (/app/), signed in at the issuer, reading this app's own API.
    install_pages(app, settings)
    app.include_router(research_export_router(app.state.fhir, settings))
    return app
