"""outcome timeline: the narrow tables outcomes aggregates over (scores, doses, EMDR sessions,
encounters, consents); empty in the other services' databases

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 11:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _id(name: str, *, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.String(64), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "outcome_scores",
        sa.Column(
            "obs_id",
            sa.String(64).with_variant(sa.String(64, collation="C"), "postgresql"),
            nullable=False,
        ),
        _id("patient_id"),
        sa.Column("measure", sa.String(32), nullable=False),
        sa.Column("effective", sa.DateTime(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        _id("encounter_id", nullable=True),
        sa.Column("derived", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("obs_id"),
    )
    op.create_index(
        "ix_outcome_scores_measure", "outcome_scores", ["measure", "patient_id", "effective"]
    )
    op.create_index(
        "ix_outcome_scores_nearest",
        "outcome_scores",
        ["patient_id", "measure", "effective", "obs_id", "value"],
    )
    op.create_index("ix_outcome_scores_patient", "outcome_scores", ["patient_id", "effective"])
    op.create_index("ix_outcome_scores_encounter", "outcome_scores", ["encounter_id"])
    op.create_table(
        "outcome_doses",
        _id("dose_id"),
        _id("patient_id"),
        sa.Column("start", sa.DateTime(), nullable=False),
        sa.Column("ended", sa.DateTime(), nullable=False),
        _id("route", nullable=True),
        _id("protocol", nullable=True),
        sa.Column("window_start", sa.DateTime(), nullable=True),
        sa.Column("optimal_start", sa.DateTime(), nullable=True),
        sa.Column("optimal_end", sa.DateTime(), nullable=True),
        sa.Column("window_end", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("dose_id"),
    )
    op.create_index("ix_outcome_doses_patient", "outcome_doses", ["patient_id", "start"])
    op.create_table(
        "outcome_sessions",
        _id("appointment_id"),
        _id("patient_id"),
        sa.Column("start", sa.DateTime(), nullable=True),
        sa.Column("end", sa.DateTime(), nullable=True),
        sa.Column("status", sa.String(32), nullable=False),
        _id("dose_id", nullable=True),
        sa.Column("offset_hours", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("appointment_id"),
    )
    op.create_index("ix_outcome_sessions_patient", "outcome_sessions", ["patient_id", "start"])
    op.create_index("ix_outcome_sessions_dose", "outcome_sessions", ["dose_id"])
    op.create_table(
        "outcome_encounters",
        _id("encounter_id"),
        _id("patient_id"),
        _id("appointment_id", nullable=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("start", sa.DateTime(), nullable=True),
        sa.Column("end", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("encounter_id"),
    )
    op.create_index("ix_outcome_encounters_appointment", "outcome_encounters", ["appointment_id"])
    op.create_index("ix_outcome_encounters_patient", "outcome_encounters", ["patient_id"])
    op.create_table(
        "outcome_consents",
        _id("consent_id"),
        _id("patient_id"),
        sa.Column("research", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("period_start", sa.DateTime(), nullable=True),
        sa.Column("period_end", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("consent_id"),
    )
    op.create_index("ix_outcome_consents_patient", "outcome_consents", ["patient_id"])


def downgrade() -> None:
    for table in (
        "outcome_consents",
        "outcome_encounters",
        "outcome_sessions",
        "outcome_doses",
        "outcome_scores",
    ):
        op.drop_table(table)
