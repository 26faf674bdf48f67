"""sequence numbers per topic partition (the outbox row's partition, sequences and replica
progress keyed by topic and partition)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 11:30:00
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _partition() -> sa.Column:
    # Existing rows were numbered on one-partition topics: their numbers are partition 0's.
    return sa.Column("partition", sa.Integer(), nullable=False, server_default="0")


@contextlib.contextmanager
def _new_key_expected() -> Iterator[None]:
    """SQLAlchemy warns that the reflected primary key differs from the new one: it must."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*specifies columns 'topic' as primary_key")
        yield


def upgrade() -> None:
    with op.batch_alter_table("event_outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("partition", sa.Integer(), nullable=True))
    for table in ("event_sequences", "replica_progress"):
        # Recreated (SQLite cannot change a primary key in place); both tables are small.
        with (
            _new_key_expected(),
            op.batch_alter_table(table, schema=None, recreate="always") as batch_op,
        ):
            batch_op.add_column(_partition())
            batch_op.create_primary_key(f"pk_{table}", ["topic", "partition"])


def downgrade() -> None:
    for table in ("replica_progress", "event_sequences"):
        op.execute(sa.text(f"DELETE FROM {table} WHERE partition <> 0"))
        with (
            _new_key_expected(),
            op.batch_alter_table(table, schema=None, recreate="always") as batch_op,
        ):
            batch_op.drop_column("partition")
            batch_op.create_primary_key(f"pk_{table}", ["topic"])
    with op.batch_alter_table("event_outbox", schema=None) as batch_op:
        batch_op.drop_column("partition")
