"""event sequences and replica progress (gap detection)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 19:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("event_outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("seq", sa.BigInteger(), nullable=True))
    op.create_table(
        "event_sequences",
        sa.Column("topic", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("topic"),
    )
    op.create_table(
        "replica_progress",
        sa.Column("topic", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("contiguous", sa.BigInteger(), nullable=False),
        sa.Column("contiguous_time", sa.DateTime(), nullable=False),
        sa.Column("seen_above", sa.Text(), nullable=False),
        sa.Column("gap_since", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("topic"),
    )


def downgrade() -> None:
    op.drop_table("replica_progress")
    op.drop_table("event_sequences")
    with op.batch_alter_table("event_outbox", schema=None) as batch_op:
        batch_op.drop_column("seq")
