"""Check that the bulk path writes what the store writes, row for row, for a sample.

The sample is written twice, each time in a transaction rolled back afterwards: once through
the store (ResourceStore.create for the service's own resources, ReplicaWriter.put_version for
another service's), once through bench/load.py's bulk_write. Their resources, versions, search
index rows and projection rows must be equal (the server-assigned lastUpdated of the service's
own resources aside), and the bulk path must write every table the store does.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import orjson
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bench.load import NOT_BULK_LOADED, bulk_write
from shared.db.engine import Database
from shared.db.models import INDEX_TABLES, ResourceRow, VersionRow, metadata
from shared.events.replica import ReplicaWriter
from shared.fhir.registry import Registry
from shared.fhir.store import ResourceStore

Entry = tuple[str, str, dict[str, Any]]  # (resource type, id, resource)
RESOURCES = ResourceRow.__table__
VERSIONS = VersionRow.__table__


class _RolledBack(Exception):
    """Ends a sample's transaction: the sample is looked at, never kept."""


def check_bulk_matches_store(database: Database, services: Registry, sample: list[Entry]) -> int:
    """Raise RuntimeError naming the first difference; returns the rows compared."""
    store = ResourceStore(database, services, outbox=None)
    replicas = ReplicaWriter(store)

    def through_store(session: Session) -> None:
        for res_type, res_id, resource in sample:
            body = copy.deepcopy(resource)
            if services.owns(res_type):
                store.create(session, res_type, body, res_id=res_id)
            else:
                replicas.put_version(session, res_type, res_id, 1, body)

    def in_bulk(session: Session) -> None:
        by_type: dict[str, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
        for res_type, res_id, resource in sample:
            by_type[res_type].append((res_id, copy.deepcopy(resource)))
        for res_type, batch in by_type.items():
            bulk_write(session, services, res_type, batch)

    reference, reference_counts = _written(database, services, sample, through_store)
    bulk, bulk_counts = _written(database, services, sample, in_bulk)
    missing = sorted(
        name
        for name, count in reference_counts.items()
        if count and not bulk_counts.get(name) and name not in NOT_BULK_LOADED
    )
    if missing:
        raise RuntimeError(
            "bench/load.py no longer writes what the store writes; update bulk_create for: "
            + ", ".join(missing)
        )
    for table in sorted(reference.keys() | bulk.keys()):
        expected, found = reference.get(table, []), bulk.get(table, [])
        if expected != found:
            extra = [row for row in found if row not in expected][:1]
            lacking = [row for row in expected if row not in found][:1]
            raise RuntimeError(
                f"the bulk path's {table} rows differ from the store's: store has {lacking}, "
                f"bulk has {extra}"
            )
    return sum(len(rows) for rows in reference.values())


def _written(
    database: Database,
    services: Registry,
    sample: list[Entry],
    write: Callable[[Session], None],
) -> tuple[dict[str, list[Any]], dict[str, int]]:
    """What `write` puts in the tables for the sample, read before it is rolled back."""
    found: dict[str, list[Any]] = {}
    counts: dict[str, int] = {}
    try:
        with database.write() as session:
            before = _counts(session)
            write(session)
            counts = {name: n - before.get(name, 0) for name, n in _counts(session).items()}
            found = _rows(session, services, sample)
            raise _RolledBack
    except _RolledBack:
        pass
    return found, counts


def _counts(session: Session) -> dict[str, int]:
    return {
        table.name: int(session.execute(select(func.count()).select_from(table)).scalar_one())
        for table in metadata.sorted_tables
    }


def _rows(session: Session, services: Registry, sample: list[Entry]) -> dict[str, list[Any]]:
    """Every row of the sample's resources, in a comparable form, by table."""
    found: dict[str, list[Any]] = {}
    by_type: dict[str, list[str]] = defaultdict(list)
    for res_type, res_id, _ in sample:
        by_type[res_type].append(res_id)
    for res_type, ids in by_type.items():
        own = services.owns(res_type)
        current = session.execute(
            select(RESOURCES).where(RESOURCES.c.res_type == res_type, RESOURCES.c.res_id.in_(ids))
        ).mappings()
        pks = {}
        for row in current:
            pks[row["pk"]] = row["res_id"]
            found.setdefault(RESOURCES.name, []).append(_comparable(row, replica=not own))
        versions = session.execute(
            select(VERSIONS).where(VERSIONS.c.res_type == res_type, VERSIONS.c.res_id.in_(ids))
        ).mappings()
        found.setdefault(VERSIONS.name, []).extend(
            _comparable(row, replica=not own) for row in versions
        )
        for model in INDEX_TABLES.values():
            table = model.__table__
            rows = session.execute(select(table).where(table.c.resource_pk.in_(pks))).mappings()
            found.setdefault(table.name, []).extend(
                {
                    "res_id": pks[row["resource_pk"]],
                    **{str(k): v for k, v in row.items() if k not in ("pk", "resource_pk")},
                }
                for row in rows
            )
        for projection in services.projections.get(res_type, ()):
            table = projection.table
            rows = session.execute(select(table).where(table.c[projection.key].in_(ids)))
            found.setdefault(table.name, []).extend(
                {str(k): v for k, v in row.items()} for row in rows.mappings()
            )
    return {name: sorted(rows, key=_sort_key) for name, rows in found.items()}


def _sort_key(row: dict[str, Any]) -> bytes:
    return orjson.dumps(row, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SORT_KEYS, default=str)


def _comparable(row: Any, *, replica: bool) -> dict[str, Any]:
    """A resources or versions row without its key; the service's own resources without the
    moment it was written (the store and the bulk path stamp their own `now`)."""
    out = {str(k): v for k, v in row.items() if k != "pk"}
    content = orjson.loads(out.pop("content")) if out.get("content") else None
    if content is not None and not replica:
        content["meta"].pop("lastUpdated", None)
        out.pop("last_updated", None)
    out["content"] = content
    return out
