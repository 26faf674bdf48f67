"""Rebuild search index rows and projections from the stored resources, resumably.

Each batch of resources is reindexed in its own short transaction, which also moves the
type's cursor (`reindex_progress`): the service keeps serving, and a run stopped half-way
resumes where it was. The resource rows of a batch are locked while it is rebuilt, so a write
committing meanwhile cannot be overwritten by an older version's index rows.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session

from shared.db.engine import Database
from shared.db.models import INDEX_TABLES, ReindexProgress, ResourceRow
from shared.fhir import exact_json
from shared.fhir.dates import utcnow
from shared.fhir.store import ResourceStore

# Called after each batch with (type, done, total).
Progress = Callable[[str, int, int], None]


def _current(res_type: str) -> tuple:
    return (ResourceRow.res_type == res_type, ResourceRow.deleted.is_(False))


def _cursor(session: Session, res_type: str) -> tuple[int, int]:
    """(last primary key done, resources done) of an unfinished run, else (0, 0)."""
    row = session.execute(
        select(ReindexProgress.last_pk, ReindexProgress.done).where(
            ReindexProgress.res_type == res_type
        )
    ).first()
    return (int(row.last_pk), int(row.done)) if row else (0, 0)


def _save(session: Session, res_type: str, last_pk: int, done: int) -> None:
    now = utcnow()
    found = session.execute(
        update(ReindexProgress)
        .where(ReindexProgress.res_type == res_type)
        .values(last_pk=last_pk, done=done, updated_at=now)
    ).rowcount
    if not found:
        session.execute(
            insert(ReindexProgress).values(
                res_type=res_type, last_pk=last_pk, done=done, started_at=now, updated_at=now
            )
        )


def _batch(
    store: ResourceStore, session: Session, res_type: str, after: int, size: int
) -> tuple[int, int]:
    """Reindex the next `size` current resources after `after`; (their count, last pk)."""
    query = (
        select(ResourceRow.pk, ResourceRow.res_id, ResourceRow.content)
        .where(*_current(res_type), ResourceRow.pk > after)
        .order_by(ResourceRow.pk)
        .limit(size)
    )
    if not store.database.is_sqlite:
        query = query.with_for_update()
    rows = session.execute(query).all()
    if not rows:
        return 0, after
    pks = [row.pk for row in rows]
    for table in INDEX_TABLES.values():
        session.execute(delete(table).where(table.resource_pk.in_(pks)))
    projections = store.registry.projections.get(res_type, ())
    for row in rows:
        resource = exact_json.loads(row.content)
        store.write_index(session, row.pk, res_type, resource)
        for projection in projections:
            projection.apply(session, row.res_id, resource)
    return len(rows), pks[-1]


def _remove_orphans(store: ResourceStore, session: Session, res_type: str) -> None:
    """Index and projection rows of no current resource (left by a corruption or a bug)."""
    live_pks = select(ResourceRow.pk).where(*_current(res_type))
    for table in INDEX_TABLES.values():
        session.execute(
            delete(table).where(table.res_type == res_type, table.resource_pk.not_in(live_pks))
        )
    live_ids = select(ResourceRow.res_id).where(*_current(res_type))
    for projection in store.registry.projections.get(res_type, ()):
        column = projection.table.c[projection.key]
        session.execute(delete(projection.table).where(column.not_in(live_ids)))


def reindex_type(
    store: ResourceStore, res_type: str, *, batch: int = 500, progress: Progress | None = None
) -> int:
    """Reindex every current resource of a type (resuming an unfinished run); returns how
    many resources this run and the one it resumed reindexed."""
    database: Database = store.database
    with database.read() as session:
        after, done = _cursor(session, res_type)
        remaining = session.execute(
            select(func.count())
            .select_from(ResourceRow)
            .where(*_current(res_type), ResourceRow.pk > after)
        ).scalar_one()
    total = done + int(remaining)
    if progress is not None:
        progress(res_type, done, total)
    while True:
        with database.write() as session:
            count, after = _batch(store, session, res_type, after, batch)
            if count == 0:
                _remove_orphans(store, session, res_type)
                session.execute(delete(ReindexProgress).where(ReindexProgress.res_type == res_type))
                return done
            done += count
            _save(session, res_type, after, done)
        if progress is not None:
            progress(res_type, done, max(total, done))
