"""audit spool: access records written before the response, drained into AuditEvents

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-09 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_spool",
        sa.Column(
            "pk",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("record", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("pk"),
    )


def downgrade() -> None:
    op.drop_table("audit_spool")
