"""The timeline's projections: which resource type feeds which table."""

from __future__ import annotations

from services.outcomes.timeline.rows import TimelineRows
from services.outcomes.timeline.tables import CONSENTS, DOSES, ENCOUNTERS, SCORES, SESSIONS
from shared.fhir.projections import Projection


def timeline_projections(canonical_base: str) -> tuple[Projection, ...]:
    """One projection per table, reading the local codes and extensions under the base."""
    rows = TimelineRows(canonical_base)
    return (
        Projection("Observation", SCORES, "obs_id", rows.score),
        Projection("MedicationAdministration", DOSES, "dose_id", rows.dose),
        Projection("Appointment", SESSIONS, "appointment_id", rows.session),
        Projection("Encounter", ENCOUNTERS, "encounter_id", rows.encounter),
        Projection("Consent", CONSENTS, "consent_id", rows.consent),
    )
