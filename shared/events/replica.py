"""Keep read-only replicas of other services' resources, at the owner's versionId."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from shared.db.models import INDEX_TABLES, ResourceRow, VersionRow
from shared.events.envelope import ResourceEvent
from shared.fhir import exact_json
from shared.fhir.dates import DateFormatError, date_range, utcnow
from shared.fhir.store import ResourceStore


def _last_updated(resource: dict[str, Any] | None, fallback: str | None) -> Any:
    for value in ((resource or {}).get("meta", {}).get("lastUpdated"), fallback):
        if isinstance(value, str):
            try:
                return date_range(value)[0]
            except DateFormatError:
                continue
    return utcnow()


class ReplicaWriter:
    """Applies owners' versions; older or repeated versions change nothing (idempotent)."""

    def __init__(self, store: ResourceStore) -> None:
        self.store = store

    def apply_event(self, session: Session, event: ResourceEvent) -> bool:
        """The consumer handler: write the event's version if it is newer than ours."""
        return self.put_version(
            session,
            event.res_type,
            event.res_id,
            event.version,
            None if event.deleted else event.data,
            event.time,
        )

    def put_version(
        self,
        session: Session,
        res_type: str,
        res_id: str,
        version_id: int,
        resource: dict[str, Any] | None,
        time: str | None = None,
    ) -> bool:
        """Store the owner's version (None: a delete); False when ours is as new already."""
        if self.store.registry.get(res_type) is None or self.store.registry.owns(res_type):
            return False
        store = self.store
        row = store.current_row(session, res_type, res_id, lock=True)
        if row is not None and row.version_id >= version_id:
            return False
        when = _last_updated(resource, time)
        content = exact_json.dumps_text(resource) if resource is not None else None
        deleted = resource is None
        if row is None:
            pk = store.insert_current(session, res_type, res_id, version_id, when, deleted, content)
        else:
            pk = row.pk
            store.set_current(session, pk, version_id, when, deleted, content)
            store.clear_index(session, pk)
        exists = session.execute(
            select(VersionRow.pk).where(
                VersionRow.res_type == res_type,
                VersionRow.res_id == res_id,
                VersionRow.version_id == version_id,
            )
        ).first()
        if not exists:
            method = "DELETE" if deleted else ("POST" if version_id == 1 else "PUT")
            store.write_version_row(
                session, res_type, res_id, version_id, when, method, deleted, content
            )
        if resource is not None:
            store.write_index(session, pk, res_type, resource)
        return True

    def clear(self, session: Session, res_type: str) -> None:
        """Forget every replicated resource of a type (before a rebuild by replay)."""
        pks = select(ResourceRow.pk).where(ResourceRow.res_type == res_type)
        for table in INDEX_TABLES.values():
            session.execute(delete(table).where(table.resource_pk.in_(pks)))
        session.execute(delete(ResourceRow).where(ResourceRow.res_type == res_type))
        session.execute(delete(VersionRow).where(VersionRow.res_type == res_type))
