"""The versioned resource store: every write keeps a version and rewrites the search index."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, delete, func, insert, select, update
from sqlalchemy.orm import Session

from shared.db.engine import Database
from shared.db.models import INDEX_TABLES, ResourceRow, VersionRow
from shared.db.rows import Rows, RowWriter
from shared.fhir import exact_json
from shared.fhir.dates import format_instant, utcnow
from shared.fhir.errors import Deleted, gone, not_found, precondition_failed
from shared.fhir.indexing import index_rows
from shared.fhir.registry import Registry


@dataclass(frozen=True)
class Stored:
    """One version of a resource as stored (resource is None for a delete)."""

    type: str
    id: str
    version_id: int
    last_updated: datetime
    deleted: bool
    resource: dict[str, Any] | None
    method: str = "GET"

    @property
    def etag(self) -> str:
        return f'W/"{self.version_id}"'

    @property
    def location(self) -> str:
        return f"{self.type}/{self.id}/_history/{self.version_id}"


# versionId is a 32-bit INTEGER column.
MAX_VERSION = 2**31 - 1

# Called inside the writing transaction, so whatever it records commits or rolls back with it.
# Records a committed-to-be change in the writer's transaction: the outbox.
ChangeRecorder = Callable[[Session, Stored], None]
# Told of every version a read returns (outside any transaction of its own).
ReadObserver = Callable[[Stored], None]

# Writes of these types are no accesses to hook: an audit record of an audit record would
# recurse.
UNHOOKED_TYPES = frozenset({"AuditEvent"})

_PENDING = "pending_rows"


def pending_rows(session: Session) -> list[Rows] | None:
    """Rows a create is gathering to insert with its own (None outside a create): the outbox
    adds its rows here so they travel in the same round trip."""
    return session.info.get(_PENDING)


def _dump(resource: dict[str, Any]) -> str:
    return exact_json.dumps_text(resource)


def _stamp(resource: dict[str, Any], res_id: str, version_id: int, when: datetime) -> None:
    resource["id"] = res_id
    meta = dict(resource.get("meta") or {})
    meta["versionId"] = str(version_id)
    meta["lastUpdated"] = format_instant(when)
    resource["meta"] = meta


# Core statements built once: the ORM's per-statement bookkeeping cost more than the database.
_RESOURCES = ResourceRow.__table__
_VERSIONS = VersionRow.__table__
_INSERT_RESOURCE = insert(_RESOURCES).returning(_RESOURCES.c.pk)
_UPDATE_RESOURCE = (
    update(_RESOURCES)
    .where(_RESOURCES.c.pk == bindparam("row_pk"))
    .values(
        version_id=bindparam("version_id"),
        last_updated=bindparam("last_updated"),
        deleted=bindparam("deleted"),
        content=bindparam("content"),
    )
)
_INSERT_VERSION = insert(_VERSIONS)
_CURRENT = select(_RESOURCES).where(
    _RESOURCES.c.res_type == bindparam("res_type"), _RESOURCES.c.res_id == bindparam("res_id")
)
_INSERT_INDEX = {kind: insert(model.__table__) for kind, model in INDEX_TABLES.items()}
_INDEX_TABLE = {kind: model.__table__ for kind, model in INDEX_TABLES.items()}
_CLEAR_INDEX = [
    delete(model.__table__).where(model.__table__.c.resource_pk == bindparam("row_pk"))
    for model in INDEX_TABLES.values()
]


class ResourceStore:
    """Reads and writes resources of the registered types inside a caller's unit of work."""

    def __init__(
        self, database: Database, registry: Registry, *, outbox: ChangeRecorder | None
    ) -> None:
        self.database = database
        self.registry = registry
        # Every create, update and delete is recorded here, in its own transaction: events
        # depend on it, so it is a step of each write, not an optional listener. None only
        # for tools that load data without events.
        self.outbox = outbox
        self.rows = RowWriter(database.write_engine.dialect)
        # Run inside each API-level create, update and delete transaction after its rows
        # are written (the audit trail), never for replica versions (`put_version`).
        self.write_hooks: list[ChangeRecorder] = []
        # Told of each version `read` and `vread` return (the audit trail notes what a
        # request touched).
        self.read_hooks: list[ReadObserver] = []
        self._visible_reads: dict[Any, Any] = {}

    # ---- reads -------------------------------------------------------------------------
    def current_row(self, session: Session, res_type: str, res_id: str, *, lock: bool) -> Any:
        """The `resources` row (a Core row, never a stale ORM object), locked if asked."""
        query = _CURRENT.with_for_update() if lock and not self.database.is_sqlite else _CURRENT
        return session.connection().execute(query, {"res_type": res_type, "res_id": res_id}).first()

    def read(
        self,
        session: Session,
        res_type: str,
        res_id: str,
        *,
        lock: bool = False,
        visible: Any = None,
    ) -> Stored:
        """The current version; 404 when it never existed, 410 when deleted.

        With `lock`, the row stays locked until the transaction ends (to write it next).
        `visible`, a condition on the row (the caller's practices), makes a current version
        it does not admit a 404 too, in the same statement.
        """
        if visible is None:
            row = self.current_row(session, res_type, res_id, lock=lock)
        else:
            # Composing the statement costs several times what running it does; the same
            # condition (one per type and set of practices) comes back request after request.
            query = self._visible_reads.get(visible)
            if query is None:
                if len(self._visible_reads) >= 1024:
                    self._visible_reads.clear()
                query = self._visible_reads[visible] = _CURRENT.add_columns(visible.label("seen"))
            params = {"res_type": res_type, "res_id": res_id}
            row = session.connection().execute(query, params).first()
            if row is not None and not row.deleted and not row.seen:
                row = None
        if row is None:
            raise not_found(f"{res_type}/{res_id} is not known")
        if row.deleted:
            raise Deleted(res_type, res_id, row.version_id)
        stored = Stored(
            res_type,
            res_id,
            row.version_id,
            row.last_updated,
            False,
            exact_json.loads(row.content),
        )
        self._observe(stored)
        return stored

    def lock_rows(self, session: Session, keys: list[tuple[str, str]]) -> None:
        """Lock the named resources up front, in one fixed order.

        Writers that touch the same resources in different orders then queue up instead of
        deadlocking. An id not stored yet gets the lock that `update` takes to create it.
        """
        if self.database.is_sqlite:
            return  # BEGIN IMMEDIATE already serialises writers
        for res_type, res_id in sorted(set(keys)):
            if self.current_row(session, res_type, res_id, lock=True) is None:
                self.database.lock(session, f"create:{res_type}/{res_id}")

    def exists(self, session: Session, res_type: str, res_id: str) -> bool:
        row = self.current_row(session, res_type, res_id, lock=False)
        return row is not None and not row.deleted

    def vread(self, session: Session, res_type: str, res_id: str, version_id: int) -> Stored:
        """One version; 404 when it does not exist, 410 when that version is a delete."""
        if not 0 < version_id <= MAX_VERSION:
            # Beyond the column's range (PostgreSQL would refuse the query): no such version.
            raise not_found(f"{res_type}/{res_id}/_history/{version_id} is not known")
        row = session.execute(
            select(VersionRow).where(
                VersionRow.res_type == res_type,
                VersionRow.res_id == res_id,
                VersionRow.version_id == version_id,
            )
        ).scalar_one_or_none()
        if row is None:
            raise not_found(f"{res_type}/{res_id}/_history/{version_id} is not known")
        if row.deleted:
            raise gone(f"{res_type}/{res_id}/_history/{version_id} is a deletion")
        stored = self._from_version(row)
        self._observe(stored)
        return stored

    @staticmethod
    def _from_version(row: VersionRow) -> Stored:
        return Stored(
            row.res_type,
            row.res_id,
            row.version_id,
            row.last_updated,
            row.deleted,
            exact_json.loads(row.content) if row.content else None,
            row.method,
        )

    def history(
        self,
        session: Session,
        *,
        res_type: str | None = None,
        res_id: str | None = None,
        since: datetime | None = None,
        at_or_before: datetime | None = None,
        count: int = 50,
        offset: int = 0,
        visible: Any = None,
    ) -> tuple[list[Stored], int]:
        """Versions newest first, filtered by type, id and time, with the total count.

        `visible`, a condition on the current ResourceRow, keeps only the versions of the
        resources it admits (the caller's practices)."""
        conditions = []
        if res_type is not None:
            conditions.append(VersionRow.res_type == res_type)
        else:
            # The audit trail is served at /AuditEvent, not mixed into the system's history.
            conditions.append(VersionRow.res_type.not_in(UNHOOKED_TYPES))
        if res_id is not None:
            conditions.append(VersionRow.res_id == res_id)
        if since is not None:
            conditions.append(VersionRow.last_updated >= since)
        if at_or_before is not None:
            conditions.append(VersionRow.last_updated <= at_or_before)
        counted = select(func.count()).select_from(VersionRow)
        listed = select(VersionRow)
        if visible is not None:
            current = and_(
                ResourceRow.res_type == VersionRow.res_type, ResourceRow.res_id == VersionRow.res_id
            )
            counted, listed = counted.join(ResourceRow, current), listed.join(ResourceRow, current)
            conditions.append(visible)
        total = session.execute(counted.where(*conditions))
        rows = session.execute(
            listed.where(*conditions)
            .order_by(VersionRow.last_updated.desc(), VersionRow.pk.desc())
            .limit(count)
            .offset(offset)
        ).scalars()
        return [self._from_version(row) for row in rows], int(total.scalar_one())

    # ---- writes ------------------------------------------------------------------------
    def create(
        self,
        session: Session,
        res_type: str,
        resource: dict[str, Any],
        *,
        res_id: str | None = None,
        method: str = "POST",
    ) -> Stored:
        """Store a new resource as version 1 under a server-assigned (or given) id."""
        res_id = res_id or str(uuid.uuid4())
        now = utcnow()
        _stamp(resource, res_id, 1, now)
        content = _dump(resource)
        stored = Stored(res_type, res_id, 1, now, False, resource, method)
        current = {
            "res_type": res_type,
            "res_id": res_id,
            "version_id": 1,
            "last_updated": now,
            "deleted": False,
            "content": content,
        }
        version = {**current, "method": method}
        rows: list[Rows] = [(_VERSIONS, [version])]
        definition = self.registry.get(res_type)
        if definition is not None:
            for kind, found in index_rows(definition, resource).items():
                rows.append((_INDEX_TABLE[kind], found))
        # The outbox adds its row to the same batch: one round trip in all.
        session.info[_PENDING] = rows
        try:
            self._notify(session, stored)
        finally:
            del session.info[_PENDING]
        self.rows.insert(session.connection(), _RESOURCES, current, rows)
        self._project(session, res_type, res_id, resource)
        # After the batch: a hook may create resources itself, which gathers its own rows.
        self._hook(session, stored)
        return stored

    def update(
        self,
        session: Session,
        res_type: str,
        res_id: str,
        resource: dict[str, Any],
        *,
        if_match: int | None = None,
        method: str = "PUT",
    ) -> tuple[Stored, bool]:
        """Write a new version (or create under this id); returns it and whether it was new."""
        row = self.current_row(session, res_type, res_id, lock=True)
        if row is None:
            # Two PUTs creating the same id: the second waits here, then sees the first.
            self.database.lock(session, f"create:{res_type}/{res_id}")
            row = self.current_row(session, res_type, res_id, lock=True)
        if row is None:
            if if_match is not None:
                raise precondition_failed(
                    f'If-Match W/"{if_match}" given but {res_type}/{res_id} does not exist'
                )
            return self.create(session, res_type, resource, res_id=res_id, method=method), True
        if if_match is not None and if_match != row.version_id:
            raise precondition_failed(
                f'If-Match W/"{if_match}" does not match the current version '
                f'W/"{row.version_id}" of {res_type}/{res_id}'
            )
        was_deleted = bool(row.deleted)
        version_id = row.version_id + 1
        now = max(utcnow(), row.last_updated)
        _stamp(resource, res_id, version_id, now)
        content = _dump(resource)
        self.set_current(session, row.pk, version_id, now, False, content)
        stored = Stored(res_type, res_id, version_id, now, False, resource, method)
        self._write_version(session, stored, content)
        self.clear_index(session, row.pk)
        self.write_index(session, row.pk, res_type, resource)
        self._project(session, res_type, res_id, resource)
        self._notify(session, stored)
        self._hook(session, stored)
        return stored, was_deleted

    def delete(self, session: Session, res_type: str, res_id: str) -> Stored | None:
        """Delete (keeping history); None when it was already deleted; 404 when never known."""
        row = self.current_row(session, res_type, res_id, lock=True)
        if row is None:
            raise not_found(f"{res_type}/{res_id} is not known")
        if row.deleted:
            return None
        version_id = row.version_id + 1
        now = max(utcnow(), row.last_updated)
        self.set_current(session, row.pk, version_id, now, True, None)
        stored = Stored(res_type, res_id, version_id, now, True, None, "DELETE")
        self._write_version(session, stored, None)
        self.clear_index(session, row.pk)
        self._project(session, res_type, res_id, None)
        self._notify(session, stored)
        self._hook(session, stored)
        return stored

    @staticmethod
    def insert_current(
        session: Session,
        res_type: str,
        res_id: str,
        version_id: int,
        when: datetime,
        deleted: bool,
        content: str | None,
    ) -> int:
        """Insert the `resources` row of a new id; returns its primary key."""
        return (
            session.connection()
            .execute(
                _INSERT_RESOURCE,
                {
                    "res_type": res_type,
                    "res_id": res_id,
                    "version_id": version_id,
                    "last_updated": when,
                    "deleted": deleted,
                    "content": content,
                },
            )
            .scalar_one()
        )

    @staticmethod
    def set_current(
        session: Session,
        pk: int,
        version_id: int,
        when: datetime,
        deleted: bool,
        content: str | None,
    ) -> None:
        session.connection().execute(
            _UPDATE_RESOURCE,
            {
                "row_pk": pk,
                "version_id": version_id,
                "last_updated": when,
                "deleted": deleted,
                "content": content,
            },
        )

    def _write_version(self, session: Session, stored: Stored, content: str | None) -> None:
        self.write_version_row(
            session,
            stored.type,
            stored.id,
            stored.version_id,
            stored.last_updated,
            stored.method,
            stored.deleted,
            content,
        )

    @staticmethod
    def write_version_row(
        session: Session,
        res_type: str,
        res_id: str,
        version_id: int,
        when: datetime,
        method: str,
        deleted: bool,
        content: str | None,
    ) -> None:
        """Append one row to the version history."""
        session.connection().execute(
            _INSERT_VERSION,
            {
                "res_type": res_type,
                "res_id": res_id,
                "version_id": version_id,
                "last_updated": when,
                "method": method,
                "deleted": deleted,
                "content": content,
            },
        )

    def write_index(
        self, session: Session, pk: int, res_type: str, resource: dict[str, Any]
    ) -> None:
        """Insert the search index rows of a resource's current version."""
        definition = self.registry.get(res_type)
        if definition is None:
            return
        connection = session.connection()
        for kind, rows in index_rows(definition, resource).items():
            for row in rows:
                row["resource_pk"] = pk
            connection.execute(_INSERT_INDEX[kind], rows)

    @staticmethod
    def clear_index(session: Session, pk: int) -> None:
        """Remove a resource's search index rows."""
        connection = session.connection()
        for statement in _CLEAR_INDEX:
            connection.execute(statement, {"row_pk": pk})

    # ---- replicas ----------------------------------------------------------------------
    def put_version(
        self,
        session: Session,
        res_type: str,
        res_id: str,
        version_id: int,
        resource: dict[str, Any] | None,
        when: datetime,
    ) -> bool:
        """Store another service's version as it is (None: a delete), with no event; False
        when ours is as new already, so an older version never overwrites a newer one."""
        row = self.current_row(session, res_type, res_id, lock=True)
        if row is not None and row.version_id >= version_id:
            return False
        content = _dump(resource) if resource is not None else None
        deleted = resource is None
        if row is None:
            pk = self.insert_current(session, res_type, res_id, version_id, when, deleted, content)
        else:
            pk = row.pk
            self.set_current(session, pk, version_id, when, deleted, content)
            self.clear_index(session, pk)
        exists = session.execute(
            select(VersionRow.pk).where(
                VersionRow.res_type == res_type,
                VersionRow.res_id == res_id,
                VersionRow.version_id == version_id,
            )
        ).first()
        if not exists:
            method = "DELETE" if deleted else ("POST" if version_id == 1 else "PUT")
            self.write_version_row(
                session, res_type, res_id, version_id, when, method, deleted, content
            )
        if resource is not None:
            self.write_index(session, pk, res_type, resource)
        self._project(session, res_type, res_id, resource)
        return True

    def newest_change(self, session: Session, res_type: str) -> datetime | None:
        """The latest lastUpdated of any resource of a type, deletions included."""
        return session.execute(
            select(func.max(ResourceRow.last_updated)).where(ResourceRow.res_type == res_type)
        ).scalar_one()

    def tally(self, session: Session, res_type: str, until: datetime) -> tuple[int, Any]:
        """How many current resources of a type changed at or before `until`, and the newest
        such change (what reconciliation compares with the owner)."""
        count, newest = session.execute(
            select(func.count(), func.max(ResourceRow.last_updated)).where(
                ResourceRow.res_type == res_type,
                ResourceRow.deleted.is_(False),
                ResourceRow.last_updated <= until,
            )
        ).one()
        return int(count), newest

    def clear_type(self, session: Session, res_type: str) -> None:
        """Forget every resource of a type, versions and index rows included (a replica's
        rebuild by replay)."""
        pks = select(ResourceRow.pk).where(ResourceRow.res_type == res_type)
        for table in INDEX_TABLES.values():
            session.execute(delete(table).where(table.resource_pk.in_(pks)))
        session.execute(delete(ResourceRow).where(ResourceRow.res_type == res_type))
        session.execute(delete(VersionRow).where(VersionRow.res_type == res_type))
        for projection in self.registry.projections.get(res_type, ()):
            projection.clear(session)

    def _project(
        self, session: Session, res_type: str, res_id: str, resource: dict[str, Any] | None
    ) -> None:
        for projection in self.registry.projections.get(res_type, ()):
            projection.apply(session, res_id, resource)

    def _notify(self, session: Session, stored: Stored) -> None:
        if self.outbox is not None:
            self.outbox(session, stored)

    def _hook(self, session: Session, stored: Stored) -> None:
        if stored.type not in UNHOOKED_TYPES:
            for hook in self.write_hooks:
                hook(session, stored)

    def _observe(self, stored: Stored) -> None:
        for hook in self.read_hooks:
            hook(stored)
