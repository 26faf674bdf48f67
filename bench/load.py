"""Load the stored Observations fast: the first through ResourceStore, the rest in bulk."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import orjson
from sqlalchemy import Table, func, insert, select, text
from sqlalchemy.orm import Session

from bench.data import Key, key_of, patient_ref, stored_observations
from services.outcomes.app import registry
from shared.db.engine import Database
from shared.db.migrate import upgrade
from shared.db.models import INDEX_TABLES, ResourceRow, VersionRow, metadata
from shared.fhir.dates import date_range, format_instant, utcnow
from shared.fhir.indexing import index_rows
from shared.fhir.projections import Projection
from shared.fhir.registry import Registry, ResourceDef
from shared.fhir.store import ResourceStore

BATCH = 2000
# Preloaded Observations count as long since relayed: their events are not in the outbox.
NOT_BULK_LOADED = {"event_outbox"}
RESOURCES = ResourceRow.__table__
VERSIONS = VersionRow.__table__


class Progress:
    """One progress line on stderr: rewritten in place on a terminal, every 10 % otherwise."""

    def __init__(self, label: str, total: int, unit: str = "Observations") -> None:
        self.label, self.total, self.unit = label, total, unit
        self.started = time.monotonic()
        self.tty = sys.stderr.isatty()
        self._next_tenth = 1

    def update(self, done: int) -> None:
        elapsed = time.monotonic() - self.started
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - done) / rate if rate else 0.0
        line = (
            f"  loading {self.label}: {done:,}/{self.total:,} {self.unit} "
            f"({rate:,.0f}/s, {elapsed:.0f}s elapsed, ETA {eta:.0f}s)"
        )
        if self.tty:
            end = "\n" if done >= self.total else ""
            print(f"\r{line}\033[K", end=end, file=sys.stderr, flush=True)
        elif done >= self.total or done * 10 >= self._next_tenth * self.total:
            self._next_tenth = done * 10 // self.total + 1
            print(line, file=sys.stderr, flush=True)


def bulk_create(
    session: Session,
    definition: ResourceDef,
    batch: list[tuple[str, dict[str, Any]]],
    *,
    projections: Sequence[Projection] = (),
    replica: bool = False,
) -> None:
    """Write what ResourceStore.create writes (row, version 1, index rows, the projections'
    rows), a batch at a time. `replica`: as ReplicaWriter.put_version writes the owner's
    version 1, its meta (lastUpdated) kept as the owner stamped it."""
    now = utcnow()
    stamp = {"versionId": "1", "lastUpdated": format_instant(now)}
    rows = []
    for res_id, resource in batch:
        resource["id"] = res_id
        when = now
        if replica and "lastUpdated" in resource.get("meta", {}):
            when = date_range(resource["meta"]["lastUpdated"])[0]
        else:
            resource["meta"] = {**resource.get("meta", {}), **stamp}
        rows.append(
            {
                "res_type": definition.type,
                "res_id": res_id,
                "version_id": 1,
                "last_updated": when,
                "deleted": False,
                "content": orjson.dumps(resource).decode(),
            }
        )
    pks = _insert_resources(session, rows)
    insert_rows(session, VERSIONS, [{**row, "method": "POST"} for row in rows])
    per_kind: dict[str, list[dict[str, Any]]] = {}
    for pk, (_, resource) in zip(pks, batch, strict=True):
        for kind, found in index_rows(definition, resource).items():
            for row in found:
                row["resource_pk"] = pk
            per_kind.setdefault(kind, []).extend(found)
    for kind, found in per_kind.items():
        insert_rows(session, INDEX_TABLES[kind].__table__, found)
    for projection in projections:
        projected = [
            {**row, projection.key: res_id}
            for res_id, resource in batch
            for row in projection.rows(res_id, resource)
        ]
        insert_rows(session, projection.table, projected)


def _insert_resources(session: Session, rows: list[dict[str, Any]]) -> list[int]:
    """Insert the current rows; their primary keys in order (PostgreSQL: taken from the
    column's sequence first, so that the rows can be copied)."""
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        statement = insert(RESOURCES).returning(RESOURCES.c.pk, sort_by_parameter_order=True)
        return list(connection.execute(statement, rows).scalars().all())
    taken = text(
        "SELECT nextval(pg_get_serial_sequence('resources', 'pk')) FROM generate_series(1, :n)"
    )
    pks = [int(pk) for pk in connection.execute(taken, {"n": len(rows)}).scalars()]
    insert_rows(session, RESOURCES, [{"pk": pk, **row} for pk, row in zip(pks, rows, strict=True)])
    return pks


def insert_rows(session: Session, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert rows that all have the first one's keys: with COPY on PostgreSQL (psycopg's
    executemany sends one INSERT per row, ten times slower here), executemany on SQLite."""
    if not rows:
        return
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        connection.execute(insert(table), rows)
        return
    columns = list(rows[0])
    names = ", ".join(f'"{name}"' for name in columns)
    cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    with cursor.copy(f'COPY "{table.name}" ({names}) FROM STDIN') as copy:
        for row in rows:
            copy.write_row([row[name] for name in columns])


def bulk_write(
    session: Session, services: Registry, res_type: str, batch: list[tuple[str, dict[str, Any]]]
) -> None:
    """bulk_create for one type of a service: its own resources as created, another
    service's as replica versions, with the tables the service projects from the type."""
    bulk_create(
        session,
        services.resources[res_type],
        batch,
        projections=services.projections.get(res_type, ()),
        replica=not services.owns(res_type),
    )


def _row_counts(session: Session) -> dict[str, int]:
    return {
        table.name: int(session.execute(select(func.count()).select_from(table)).scalar_one())
        for table in metadata.sorted_tables
    }


def _check_same_tables(reference: dict[str, int], bulk: dict[str, int]) -> None:
    """Fail loudly when ResourceStore.create now writes a table the bulk path does not."""
    missing = sorted(
        name
        for name, rows in reference.items()
        if rows and not bulk.get(name) and name not in NOT_BULK_LOADED
    )
    if missing:
        raise RuntimeError(
            "bench/load.py no longer writes what ResourceStore.create writes; update "
            f"bulk_create for: {', '.join(missing)}"
        )


def _chunks(items: Iterable[tuple[str, dict[str, Any]]], size: int) -> Iterable[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def load(
    url: str, label: str, count: int, *, patients: int, seed: int = 1
) -> tuple[list[Key], float]:
    """Migrate the database and store `count` Observations; returns their keys and seconds."""
    database = Database(url)
    try:
        upgrade(database)
        services = registry()
        # Loading data, not changing it: no events.
        store = ResourceStore(database, services, outbox=None)
        progress = Progress(label, count)
        started = time.monotonic()
        observations = iter(stored_observations(count, patients=patients, seed=seed))
        # The first goes through the store itself: the reference the bulk path is checked against.
        res_id, resource = next(observations)
        keys = [key_of(res_id, resource)]
        with database.write() as session:
            store.create(session, "Observation", resource, res_id=res_id)
            reference = _row_counts(session)
        for batch in _chunks(observations, BATCH):
            keys.extend(key_of(res_id, resource) for res_id, resource in batch)
            with database.write() as session:
                bulk_write(session, services, "Observation", batch)
            progress.update(len(keys))
        with database.read() as session:
            counts = _row_counts(session)
        _check_same_tables(reference, {k: v - reference.get(k, 0) for k, v in counts.items()})
        analyse(database)
        return keys, time.monotonic() - started
    finally:
        database.dispose()


def replicate_patients(
    url: str, patients: int, content: Callable[[int], dict[str, Any]] | None = None
) -> None:
    """The Observations' subjects in outcomes' Patient replica, as intake's events would put
    them there: outcomes takes an Observation only of a patient it knows."""
    database = Database(url)
    definition = registry().resources["Patient"]
    make = content or (lambda _n: {"resourceType": "Patient"})
    batch = [(patient_ref(n).removeprefix("Patient/"), make(n)) for n in range(patients)]
    try:
        with database.write() as session:
            bulk_create(session, definition, batch)
    finally:
        database.dispose()


def analyse(database: Database) -> None:
    """Planner statistics as the service would have them in production.

    PostgreSQL's autovacuum analyses a table after a bulk load by itself; SQLite has statistics
    only when someone runs ANALYZE, and the service never does, so none are made here either.
    """
    if database.is_sqlite:
        return
    autocommit = database.write_engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    with autocommit as connection:
        connection.exec_driver_sql("VACUUM ANALYZE")
