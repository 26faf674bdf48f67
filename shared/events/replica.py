"""Keep read-only replicas of other services' resources, at the owner's versionId."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from shared.events.envelope import ResourceEvent
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
        when = _last_updated(resource, time)
        return self.store.put_version(session, res_type, res_id, version_id, resource, when)

    def clear(self, session: Session, res_type: str) -> None:
        """Forget every replicated resource of a type (before a rebuild by replay)."""
        self.store.clear_type(session, res_type)
