"""Projections: narrow tables a service keeps in step with one resource type, so that its
analytics aggregate in SQL instead of parsing every stored resource.

Rows are derived from a resource's current version alone and written in the same transaction
as that version: the service's own writes, replica versions from events and `_history`
catch-up, deletions and a replica's rebuild all pass through the store, so a projection is
never behind what the store holds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Table, delete, insert, select
from sqlalchemy.orm import Session

from shared.db.models import ResourceRow
from shared.fhir import exact_json

if TYPE_CHECKING:
    from shared.db.engine import Database

# (resource id, resource) -> the rows for that version (the key column is filled in).
RowsOf = Callable[[str, dict[str, Any]], list[dict[str, Any]]]


@dataclass(frozen=True)
class Projection:
    """Rows of `table`, keyed by the resource id in column `key`, derived from each current
    version of `res_type` by `rows`."""

    res_type: str
    table: Table
    key: str
    rows: RowsOf

    def apply(self, session: Session, res_id: str, resource: dict[str, Any] | None) -> None:
        """Replace the resource's rows by those of this version (None: deleted, no rows)."""
        connection = session.connection()
        connection.execute(delete(self.table).where(self.table.c[self.key] == res_id))
        if resource is None:
            return
        found = self.rows(res_id, resource)
        if found:
            connection.execute(insert(self.table), [{**row, self.key: res_id} for row in found])

    def clear(self, session: Session) -> None:
        """Forget every row (the type's replica is being rebuilt)."""
        session.connection().execute(delete(self.table))

    def rebuild(self, session: Session, *, batch: int = 1000) -> int:
        """Derive the rows again from every current resource of the type; returns how many
        resources were read. For a projection added after data was stored."""
        self.clear(session)
        query = (
            select(ResourceRow.res_id, ResourceRow.content)
            .where(ResourceRow.res_type == self.res_type, ResourceRow.deleted.is_(False))
            .order_by(ResourceRow.pk)
            .execution_options(yield_per=batch)
        )
        count = 0
        for res_id, content in session.execute(query):
            self.apply(session, res_id, exact_json.loads(content))
            count += 1
        return count


def backfill(database: Database, projections: Iterable[Projection]) -> dict[str, int]:
    """Rebuild each projection whose table is empty while resources of its type are stored
    (a projection added, or its migration run, after the data): at start, once. Returns the
    resources read per table."""
    done: dict[str, int] = {}
    for projection in projections:
        with database.write() as session:
            # Two pods starting together: the second waits, then finds the table filled.
            database.lock(session, f"projection:{projection.table.name}")
            if session.execute(select(projection.table).limit(1)).first() is not None:
                continue
            stored = session.execute(
                select(ResourceRow.pk)
                .where(ResourceRow.res_type == projection.res_type, ResourceRow.deleted.is_(False))
                .limit(1)
            ).first()
            if stored is not None:
                done[projection.table.name] = projection.rebuild(session)
    return done
