"""Tables of the resource store: current resources, every version, and search index rows."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Column, DateTime, Index, Integer, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

# One metadata for every service: each service has its own database with the same schema.
metadata = SQLModel.metadata

PK = BigInteger().with_variant(Integer(), "sqlite")


class ResourceRow(SQLModel, table=True):
    """The current version of a resource (deleted ones kept as tombstones)."""

    __tablename__ = "resources"
    __table_args__ = (
        UniqueConstraint("res_type", "res_id", name="uq_resources_type_id"),
        Index("ix_resources_type_updated", "res_type", "last_updated"),
    )

    pk: int | None = Field(default=None, sa_column=Column(PK, primary_key=True, autoincrement=True))
    res_type: str = Field(max_length=64)
    res_id: str = Field(max_length=64)
    version_id: int
    last_updated: datetime = Field(sa_type=DateTime())
    deleted: bool = False
    content: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class VersionRow(SQLModel, table=True):
    """Every version ever written, the source of vread and _history."""

    __tablename__ = "resource_versions"
    __table_args__ = (
        UniqueConstraint("res_type", "res_id", "version_id", name="uq_versions_type_id_vid"),
        Index("ix_versions_updated", "last_updated"),
        Index("ix_versions_type_updated", "res_type", "last_updated"),
    )

    pk: int | None = Field(default=None, sa_column=Column(PK, primary_key=True, autoincrement=True))
    res_type: str = Field(max_length=64)
    res_id: str = Field(max_length=64)
    version_id: int
    last_updated: datetime = Field(sa_type=DateTime())
    method: str = Field(max_length=8)
    deleted: bool = False
    content: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class TokenIndex(SQLModel, table=True):
    """Token values (codes, identifiers, statuses) of current resources."""

    __tablename__ = "idx_token"
    __table_args__ = (
        Index("ix_token_code", "res_type", "param", "code", "system"),
        Index("ix_token_resource", "resource_pk"),
    )

    pk: int | None = Field(default=None, sa_column=Column(PK, primary_key=True, autoincrement=True))
    resource_pk: int = Field(sa_type=BigInteger)
    res_type: str = Field(max_length=64)
    param: str = Field(max_length=64)
    system: str | None = Field(default=None)
    code: str | None = Field(default=None)


class StringIndex(SQLModel, table=True):
    """String values, normalised (case- and accent-folded) for default matching."""

    __tablename__ = "idx_string"
    __table_args__ = (
        Index("ix_string_norm", "res_type", "param", "norm"),
        Index("ix_string_resource", "resource_pk"),
    )

    pk: int | None = Field(default=None, sa_column=Column(PK, primary_key=True, autoincrement=True))
    resource_pk: int = Field(sa_type=BigInteger)
    res_type: str = Field(max_length=64)
    param: str = Field(max_length=64)
    norm: str
    exact: str


class DateIndex(SQLModel, table=True):
    """Date values as the inclusive UTC range [low, high] they cover."""

    __tablename__ = "idx_date"
    __table_args__ = (
        Index("ix_date_low", "res_type", "param", "low"),
        Index("ix_date_high", "res_type", "param", "high"),
        Index("ix_date_resource", "resource_pk"),
    )

    pk: int | None = Field(default=None, sa_column=Column(PK, primary_key=True, autoincrement=True))
    resource_pk: int = Field(sa_type=BigInteger)
    res_type: str = Field(max_length=64)
    param: str = Field(max_length=64)
    low: datetime = Field(sa_type=DateTime())
    high: datetime = Field(sa_type=DateTime())


class ReferenceIndex(SQLModel, table=True):
    """References to other resources, normalised to target type and id."""

    __tablename__ = "idx_reference"
    __table_args__ = (
        Index("ix_reference_target", "res_type", "param", "target_id", "target_type"),
        Index("ix_reference_resource", "resource_pk"),
    )

    pk: int | None = Field(default=None, sa_column=Column(PK, primary_key=True, autoincrement=True))
    resource_pk: int = Field(sa_type=BigInteger)
    res_type: str = Field(max_length=64)
    param: str = Field(max_length=64)
    target_type: str | None = Field(default=None, max_length=64)
    target_id: str | None = Field(default=None)
    url: str


# Byte order is numeric order for these keys (shared/fhir/number_keys.py); PostgreSQL's default
# collation would sort them by language rules, so it compares them as plain bytes ("C").
NUMBER_KEY = Text().with_variant(Text(collation="C"), "postgresql")


class QuantityIndex(SQLModel, table=True):
    """Quantity values (as exact order keys) with their system and unit code."""

    __tablename__ = "idx_quantity"
    __table_args__ = (
        Index("ix_quantity_value_key", "res_type", "param", "value_key"),
        Index("ix_quantity_resource", "resource_pk"),
    )

    pk: int | None = Field(default=None, sa_column=Column(PK, primary_key=True, autoincrement=True))
    resource_pk: int = Field(sa_type=BigInteger)
    res_type: str = Field(max_length=64)
    param: str = Field(max_length=64)
    value_key: str = Field(sa_column=Column(NUMBER_KEY, nullable=False))
    system: str | None = Field(default=None)
    code: str | None = Field(default=None)
    unit: str | None = Field(default=None)


INDEX_TABLES = {
    "token": TokenIndex,
    "string": StringIndex,
    "date": DateIndex,
    "reference": ReferenceIndex,
    "quantity": QuantityIndex,
}


class OutboxRow(SQLModel, table=True):
    """An event written in the same transaction as the change it reports, until relayed."""

    __tablename__ = "event_outbox"
    __table_args__ = (
        UniqueConstraint("event_id", name="uq_outbox_event_id"),
        Index("ix_outbox_unsent", "sent_at", "pk"),
    )

    pk: int | None = Field(default=None, sa_column=Column(PK, primary_key=True, autoincrement=True))
    event_id: str = Field(max_length=36)
    topic: str = Field(max_length=255)
    key: str = Field(max_length=200)
    event_type: str = Field(max_length=255)
    payload: str = Field(sa_column=Column(Text, nullable=False))
    traceparent: str | None = Field(default=None, max_length=64)
    created_at: datetime = Field(sa_type=DateTime())
    sent_at: datetime | None = Field(default=None, sa_type=DateTime())
    # The partition's sequence number, given by the relay in publishing order (gap detection).
    seq: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    # The partition the relay chose from the key when it numbered the row; a row sent again
    # goes to the same one, whatever the topic's partition count has become.
    partition: int | None = Field(default=None, nullable=True)


class TopicSequence(SQLModel, table=True):
    """The last sequence number the relay gave on each topic partition."""

    __tablename__ = "event_sequences"

    topic: str = Field(max_length=255, primary_key=True)
    partition: int = Field(default=0, primary_key=True, sa_column_kwargs={"server_default": "0"})
    last_seq: int = Field(sa_column=Column(BigInteger, nullable=False))


class ReplicaProgress(SQLModel, table=True):
    """Per replicated topic partition: the sequence up to which every event was applied, and
    any gap. Partitions are consumed independently (by several processes), so each counts."""

    __tablename__ = "replica_progress"

    topic: str = Field(max_length=255, primary_key=True)
    partition: int = Field(default=0, primary_key=True, sa_column_kwargs={"server_default": "0"})
    # Every event up to this sequence number has been applied.
    contiguous: int = Field(sa_column=Column(BigInteger, nullable=False))
    # The owner's time of that event: a catch-up from `_history` starts there.
    contiguous_time: datetime = Field(sa_type=DateTime())
    # Sequences seen above `contiguous`, as JSON [[first, last], ...] ranges.
    seen_above: str = Field(default="[]", sa_column=Column(Text, nullable=False))
    # Since when a gap has been open (None: no gap).
    gap_since: datetime | None = Field(default=None, sa_type=DateTime())


class ProcessedEvent(SQLModel, table=True):
    """An event a consumer has applied; inserting it twice fails, so replays apply nothing."""

    __tablename__ = "processed_events"

    consumer: str = Field(max_length=100, primary_key=True)
    event_id: str = Field(max_length=36, primary_key=True)
    processed_at: datetime = Field(sa_type=DateTime())


class AuditSpoolRow(SQLModel, table=True):
    """An access recorded before its response was sent, until drained into an AuditEvent."""

    __tablename__ = "audit_spool"

    pk: int | None = Field(default=None, sa_column=Column(PK, primary_key=True, autoincrement=True))
    # The access as JSON (shared.auth.audit_record.Access): small, so the insert stays cheap.
    record: str = Field(sa_column=Column(Text, nullable=False))


class ReindexProgress(SQLModel, table=True):
    """A reindex of one resource type in progress: resources up to `last_pk` are done."""

    __tablename__ = "reindex_progress"

    res_type: str = Field(max_length=64, primary_key=True)
    last_pk: int = Field(sa_column=Column(BigInteger, nullable=False))
    done: int = Field(sa_column=Column(BigInteger, nullable=False))
    started_at: datetime = Field(sa_type=DateTime())
    updated_at: datetime = Field(sa_type=DateTime())


class RelayState(SQLModel, table=True):
    """What the outbox relay last went through, for `outbox status` in another process."""

    __tablename__ = "relay_state"

    # One row per database ("relay").
    name: str = Field(max_length=32, primary_key=True)
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    last_error_at: datetime | None = Field(default=None, sa_type=DateTime())
