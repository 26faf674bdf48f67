"""The timeline tables outcomes aggregates over (shared/fhir/projections.py keeps them current).

They live in the one metadata every service's database is migrated with (migration 0006), so
the other services' databases hold them empty. Times are naive UTC, as in the store's tables.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Column, DateTime, Float, Index, String, Table

from shared.db.models import metadata

_ID = 64
_BYTEWISE = String(_ID).with_variant(String(_ID, collation="C"), "postgresql")

SCORES = Table(
    "outcome_scores",
    metadata,
    # Ties in time go to the larger id: compared as bytes on PostgreSQL too (as in Python),
    # whatever the database's locale.
    Column(
        "obs_id",
        String(_ID).with_variant(String(_ID, collation="C"), "postgresql"),
        primary_key=True,
    ),
    Column("patient_id", String(_ID), nullable=False),
    Column("measure", String(32), nullable=False),  # the measures.json key, e.g. phq9-total
    Column("effective", DateTime(), nullable=False),
    Column("value", Float(), nullable=False),
    Column("encounter_id", String(_ID), nullable=True),
    Column("derived", Boolean(), nullable=False),
    Index("ix_outcome_scores_measure", "measure", "patient_id", "effective"),
    # Covers the reports' nearest-score probes: no table visit, no sort.
    Index("ix_outcome_scores_nearest", "patient_id", "measure", "effective", "obs_id", "value"),
    Index("ix_outcome_scores_patient", "patient_id", "effective"),
    Index("ix_outcome_scores_encounter", "encounter_id"),
)

DOSES = Table(
    "outcome_doses",
    metadata,
    Column("dose_id", String(_ID), primary_key=True),
    Column("patient_id", String(_ID), nullable=False),
    Column("start", DateTime(), nullable=False),
    Column("ended", DateTime(), nullable=False),
    Column("route", String(_ID), nullable=True),  # SNOMED code of dosage.route
    Column("protocol", String(_ID), nullable=True),  # the dosing protocol id the window names
    Column("window_start", DateTime(), nullable=True),
    Column("optimal_start", DateTime(), nullable=True),
    Column("optimal_end", DateTime(), nullable=True),
    Column("window_end", DateTime(), nullable=True),
    Index("ix_outcome_doses_patient", "patient_id", "start"),
)

SESSIONS = Table(
    "outcome_sessions",
    metadata,
    Column("appointment_id", String(_ID), primary_key=True),
    Column("patient_id", String(_ID), nullable=False),
    Column("start", DateTime(), nullable=True),
    Column("end", DateTime(), nullable=True),
    Column("status", String(32), nullable=False),
    Column("dose_id", String(_ID), nullable=True),
    Column("offset_hours", Float(), nullable=True),
    Index("ix_outcome_sessions_patient", "patient_id", "start"),
    Index("ix_outcome_sessions_dose", "dose_id"),
)

ENCOUNTERS = Table(
    "outcome_encounters",
    metadata,
    Column("encounter_id", String(_ID), primary_key=True),
    Column("patient_id", String(_ID), nullable=False),
    Column("appointment_id", String(_ID), nullable=True),
    Column("status", String(32), nullable=False),
    Column("start", DateTime(), nullable=True),
    Column("end", DateTime(), nullable=True),
    Index("ix_outcome_encounters_appointment", "appointment_id"),
    Index("ix_outcome_encounters_patient", "patient_id"),
)

CONSENTS = Table(
    "outcome_consents",
    metadata,
    Column("consent_id", String(_ID), primary_key=True),
    Column("patient_id", String(_ID), nullable=False),
    Column("research", Boolean(), nullable=False),  # scope is the `research` code
    Column("status", String(32), nullable=False),
    Column("period_start", DateTime(), nullable=True),
    Column("period_end", DateTime(), nullable=True),
    Index("ix_outcome_consents_patient", "patient_id"),
)
