"""resource store

Revision ID: 0001
Revises:
Create Date: 2026-11-25 14:59:20.502143
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "idx_date",
        sa.Column(
            "pk",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("resource_pk", sa.BigInteger(), nullable=False),
        sa.Column("res_type", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("param", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("low", sa.DateTime(), nullable=False),
        sa.Column("high", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("pk"),
    )
    with op.batch_alter_table("idx_date", schema=None) as batch_op:
        batch_op.create_index("ix_date_high", ["res_type", "param", "high"], unique=False)
        batch_op.create_index("ix_date_low", ["res_type", "param", "low"], unique=False)
        batch_op.create_index("ix_date_resource", ["resource_pk"], unique=False)

    op.create_table(
        "idx_quantity",
        sa.Column(
            "pk",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("resource_pk", sa.BigInteger(), nullable=False),
        sa.Column("res_type", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("param", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("system", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("code", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("unit", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.PrimaryKeyConstraint("pk"),
    )
    with op.batch_alter_table("idx_quantity", schema=None) as batch_op:
        batch_op.create_index("ix_quantity_resource", ["resource_pk"], unique=False)
        batch_op.create_index("ix_quantity_value", ["res_type", "param", "value"], unique=False)

    op.create_table(
        "idx_reference",
        sa.Column(
            "pk",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("resource_pk", sa.BigInteger(), nullable=False),
        sa.Column("res_type", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("param", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("target_type", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("target_id", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("url", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.PrimaryKeyConstraint("pk"),
    )
    with op.batch_alter_table("idx_reference", schema=None) as batch_op:
        batch_op.create_index("ix_reference_resource", ["resource_pk"], unique=False)
        batch_op.create_index(
            "ix_reference_target",
            ["res_type", "param", "target_id", "target_type"],
            unique=False,
        )

    op.create_table(
        "idx_string",
        sa.Column(
            "pk",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("resource_pk", sa.BigInteger(), nullable=False),
        sa.Column("res_type", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("param", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("norm", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("exact", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.PrimaryKeyConstraint("pk"),
    )
    with op.batch_alter_table("idx_string", schema=None) as batch_op:
        batch_op.create_index("ix_string_norm", ["res_type", "param", "norm"], unique=False)
        batch_op.create_index("ix_string_resource", ["resource_pk"], unique=False)

    op.create_table(
        "idx_token",
        sa.Column(
            "pk",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("resource_pk", sa.BigInteger(), nullable=False),
        sa.Column("res_type", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("param", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("system", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("code", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.PrimaryKeyConstraint("pk"),
    )
    with op.batch_alter_table("idx_token", schema=None) as batch_op:
        batch_op.create_index(
            "ix_token_code", ["res_type", "param", "code", "system"], unique=False
        )
        batch_op.create_index("ix_token_resource", ["resource_pk"], unique=False)

    op.create_table(
        "resource_versions",
        sa.Column(
            "pk",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("res_type", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("res_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("last_updated", sa.DateTime(), nullable=False),
        sa.Column("method", sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("content", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("pk"),
        sa.UniqueConstraint("res_type", "res_id", "version_id", name="uq_versions_type_id_vid"),
    )
    with op.batch_alter_table("resource_versions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_versions_type_updated", ["res_type", "last_updated"], unique=False
        )
        batch_op.create_index("ix_versions_updated", ["last_updated"], unique=False)

    op.create_table(
        "resources",
        sa.Column(
            "pk",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("res_type", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("res_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("last_updated", sa.DateTime(), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("content", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("pk"),
        sa.UniqueConstraint("res_type", "res_id", name="uq_resources_type_id"),
    )
    with op.batch_alter_table("resources", schema=None) as batch_op:
        batch_op.create_index(
            "ix_resources_type_updated", ["res_type", "last_updated"], unique=False
        )


def downgrade() -> None:

    with op.batch_alter_table("resources", schema=None) as batch_op:
        batch_op.drop_index("ix_resources_type_updated")

    op.drop_table("resources")
    with op.batch_alter_table("resource_versions", schema=None) as batch_op:
        batch_op.drop_index("ix_versions_updated")
        batch_op.drop_index("ix_versions_type_updated")

    op.drop_table("resource_versions")
    with op.batch_alter_table("idx_token", schema=None) as batch_op:
        batch_op.drop_index("ix_token_resource")
        batch_op.drop_index("ix_token_code")

    op.drop_table("idx_token")
    with op.batch_alter_table("idx_string", schema=None) as batch_op:
        batch_op.drop_index("ix_string_resource")
        batch_op.drop_index("ix_string_norm")

    op.drop_table("idx_string")
    with op.batch_alter_table("idx_reference", schema=None) as batch_op:
        batch_op.drop_index("ix_reference_target")
        batch_op.drop_index("ix_reference_resource")

    op.drop_table("idx_reference")
    with op.batch_alter_table("idx_quantity", schema=None) as batch_op:
        batch_op.drop_index("ix_quantity_value")
        batch_op.drop_index("ix_quantity_resource")

    op.drop_table("idx_quantity")
    with op.batch_alter_table("idx_date", schema=None) as batch_op:
        batch_op.drop_index("ix_date_resource")
        batch_op.drop_index("ix_date_low")
        batch_op.drop_index("ix_date_high")

    op.drop_table("idx_date")
