"""exact quantity index: order keys (text) replace the float value

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 10:00:00
"""

from __future__ import annotations

from decimal import Decimal

import sqlalchemy as sa
from alembic import op

from shared.fhir.number_keys import from_key, order_key

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

NUMBER_KEY = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")
_BATCH = 5000


def _backfill(select_sql: str, update_sql: str, convert) -> None:
    bind = op.get_bind()
    rows = bind.execute(sa.text(select_sql)).all()
    for start in range(0, len(rows), _BATCH):
        batch = rows[start : start + _BATCH]
        bind.execute(sa.text(update_sql), [{"pk": pk, "v": convert(v)} for pk, v in batch])


def upgrade() -> None:
    with op.batch_alter_table("idx_quantity", schema=None) as batch_op:
        batch_op.add_column(sa.Column("value_key", NUMBER_KEY, nullable=True))
    # Stored values were doubles written back as their shortest text, so repr() is what the
    # resources' JSON says.
    _backfill(
        "SELECT pk, value FROM idx_quantity",
        "UPDATE idx_quantity SET value_key = :v WHERE pk = :pk",
        lambda value: order_key(Decimal(repr(float(value)))),
    )
    with op.batch_alter_table("idx_quantity", schema=None) as batch_op:
        batch_op.alter_column("value_key", existing_type=NUMBER_KEY, nullable=False)
        batch_op.drop_index("ix_quantity_value")
        batch_op.drop_column("value")
        batch_op.create_index(
            "ix_quantity_value_key", ["res_type", "param", "value_key"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("idx_quantity", schema=None) as batch_op:
        batch_op.add_column(sa.Column("value", sa.Float(), nullable=True))
    _backfill(
        "SELECT pk, value_key FROM idx_quantity",
        "UPDATE idx_quantity SET value = :v WHERE pk = :pk",
        lambda key: float(from_key(key)),
    )
    with op.batch_alter_table("idx_quantity", schema=None) as batch_op:
        batch_op.alter_column("value", existing_type=sa.Float(), nullable=False)
        batch_op.drop_index("ix_quantity_value_key")
        batch_op.drop_column("value_key")
        batch_op.create_index("ix_quantity_value", ["res_type", "param", "value"], unique=False)
