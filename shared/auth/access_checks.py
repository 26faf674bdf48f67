"""Practice-level access for single resources and writes: 404 for what the caller cannot
see, 403 for a write that would put a resource outside the caller's practices."""

from __future__ import annotations

from typing import Any

from sqlalchemy import distinct, func, select
from sqlalchemy.orm import Session

from shared.auth.access import restriction, visible, visible_patient_ids
from shared.db.models import ResourceRow, VersionRow
from shared.fhir import exact_json
from shared.fhir.catalogue import PATIENT_COMPARTMENT, PRACTICE_PARAMS
from shared.fhir.errors import FHIRError, not_found
from shared.fhir.indexing import index_rows
from shared.fhir.registry import ResourceDef
from shared.fhir.rules import MissingReplica


def _linked_ids(definition: ResourceDef, resource: dict[str, Any]) -> set[str]:
    """What a resource's content ties it to: a Patient's practice Organization ids, or the
    Patient ids of a compartment resource (untyped references counted, as in `access`)."""
    rows = index_rows(definition, resource).get("reference", [])
    if definition.type == "Patient":
        return {
            r["target_id"]
            for r in rows
            if r["param"] in PRACTICE_PARAMS and r["target_type"] == "Organization"
        }
    params = PATIENT_COMPARTMENT[definition.type]
    return {
        r["target_id"]
        for r in rows
        if r["param"] in params and r["target_id"] and r["target_type"] in ("Patient", None)
    }


def _all_visible_patients(session: Session, ids: set[str], practices: frozenset[str]) -> bool:
    patients = visible_patient_ids(practices).subquery()
    found = session.execute(
        select(func.count(distinct(patients.c.res_id))).where(patients.c.res_id.in_(sorted(ids)))
    ).scalar_one()
    return int(found) == len(ids)


def _content_visible(
    session: Session, definition: ResourceDef, resource: dict[str, Any], practices: frozenset[str]
) -> bool:
    """Whether a resource with this content is visible (a deleted one's last content)."""
    ids = _linked_ids(definition, resource)
    if definition.type == "Patient":
        return any(f"Organization/{i}" in practices for i in ids)
    return bool(ids) and _all_visible_patients(session, ids, practices)


def _is_patient_data(res_type: str) -> bool:
    return res_type == "Patient" or res_type in PATIENT_COMPARTMENT


def require_visible(session: Session, definition: ResourceDef, res_id: str) -> None:
    """404 when the resource exists (or existed) and the caller may not see it.

    A deleted resource has no index rows left, so its last live content decides: a caller
    who could see it learns it is gone (410 from the store), anyone else that it is unknown.
    """
    practices = restriction()
    res_type = definition.type
    if practices is None or not _is_patient_data(res_type):
        return
    # One statement: whether it exists, and whether the caller sees it.
    row = session.execute(
        select(ResourceRow.deleted, visible(res_type).label("seen")).where(
            ResourceRow.res_type == res_type, ResourceRow.res_id == res_id
        )
    ).first()
    if row is None:
        return  # never existed: a read's own 404, or an update that creates it
    if not row.deleted:
        if row.seen:
            return
    else:
        content = session.execute(
            select(VersionRow.content)
            .where(
                VersionRow.res_type == res_type,
                VersionRow.res_id == res_id,
                VersionRow.deleted.is_(False),
            )
            .order_by(VersionRow.version_id.desc())
            .limit(1)
        ).scalar_one_or_none()
        if content and _content_visible(session, definition, exact_json.loads(content), practices):
            return
    raise not_found(f"{res_type}/{res_id} is not known")


def _first_unreplicated(session: Session, ids: set[str]) -> str | None:
    """The first of a resource's patient ids this service holds no current Patient for (None
    when it holds them all). Where Patient is not a replica, the owner lookup finds nothing."""
    held = set(
        session.execute(
            select(ResourceRow.res_id).where(
                ResourceRow.res_type == "Patient",
                ResourceRow.res_id.in_(sorted(ids)),
                ResourceRow.deleted.is_(False),
            )
        ).scalars()
    )
    return next((i for i in sorted(ids) if i not in held), None)


def check_write(
    session: Session,
    definition: ResourceDef,
    resource: dict[str, Any],
    previous: dict[str, Any] | None = None,
) -> None:
    """403 when the resource as written would not belong to the caller's practices.

    A Patient must name at least one of the caller's practices as managingOrganization or
    generalPractitioner Organization; other Organizations only as far as `previous` (the
    version it replaces) already named them, so a practice sharing a patient can neither
    add another practice nor drop one. A compartment resource must reference at least one
    patient and only patients the caller can see. The answer is the same whether another
    practice's patient exists or not, so it reveals nothing.
    """
    practices = restriction()
    res_type = definition.type
    if practices is None or not _is_patient_data(res_type):
        return
    ids = _linked_ids(definition, resource)
    if res_type == "Patient":
        shared = _linked_ids(definition, previous) if previous else set()
        mine = {i for i in ids if f"Organization/{i}" in practices}
        others_before = {i for i in shared if f"Organization/{i}" not in practices}
        others_now = ids - mine
        allowed = bool(mine) and others_now == others_before
        what = (
            "name one of the caller's practices as managingOrganization or "
            "generalPractitioner, and other practices only as the current version does"
        )
    else:
        allowed = bool(ids) and _all_visible_patients(session, ids, practices)
        what = "reference only patients of the caller's practices"
    if not allowed:
        message = f"A {res_type} written by this client must {what}"
        missing = None if res_type == "Patient" else _first_unreplicated(session, ids)
        if missing is not None:
            # Perhaps a patient whose event has not arrived: the write runs again once it has
            # been fetched from its owner, and the answer is this same 403 if it still fails.
            raise MissingReplica("Patient", missing, message, status=403, code="forbidden")
        raise FHIRError(403, message, code="forbidden")
