"""`Patient/{id}/$everything`: the patient and every resource here that refers to it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, func, or_, select

from shared.auth.access import visible_any
from shared.db.models import ReferenceIndex, ResourceRow
from shared.fhir import exact_json
from shared.fhir.dates import date_range
from shared.fhir.operations import Operation, OperationCall, OperationParam, OperationResult
from shared.fhir.result_bundles import page_of
from shared.fhir.store import UNHOOKED_TYPES

_DEFAULT_COUNT = 50
_MAX_COUNT = 1000


def _everything(call: OperationCall) -> OperationResult:
    session = call.session
    pid = call.res_id or ""
    # 404 for an unknown patient (or one the caller may not see), 410 for a deleted one, as
    # a read would answer.
    call.interactions.read(session, "Patient", pid)
    count = min(max(call.one("_count", _DEFAULT_COUNT), 1), _MAX_COUNT)
    offset = max(call.one("_offset", 0), 0)
    referring = select(ReferenceIndex.resource_pk).where(
        ReferenceIndex.target_type == "Patient", ReferenceIndex.target_id == pid
    )
    conditions = [
        ResourceRow.deleted.is_(False),
        # The audit trail about the patient is not part of their record.
        ResourceRow.res_type.not_in(UNHOOKED_TYPES),
        or_(
            and_(ResourceRow.res_type == "Patient", ResourceRow.res_id == pid),
            ResourceRow.pk.in_(referring),
        ),
    ]
    types = call.inputs.get("_type")
    if types:
        conditions.append(ResourceRow.res_type.in_([t for v in types for t in v.split(",")]))
    limited = visible_any(call.interactions.registry.resources)
    if limited is not None:
        conditions.append(limited)
    since = call.one("_since")
    if since:
        conditions.append(ResourceRow.last_updated >= date_range(since)[0])
    total = session.execute(select(func.count()).where(*conditions)).scalar_one()
    rows = session.execute(
        select(ResourceRow.content)
        .where(*conditions)
        # The patient first, then by type and id: a stable order for offset paging.
        .order_by((ResourceRow.res_type != "Patient"), ResourceRow.res_type, ResourceRow.res_id)
        .limit(count)
        .offset(offset)
    ).scalars()
    resources: list[dict[str, Any]] = [exact_json.loads(content) for content in rows]
    applied = [
        (name, str(value)) for name in ("_since", "_type") for value in call.inputs.get(name, [])
    ]
    return OperationResult(
        page_of(call.base, call.url, resources, int(total), count, offset, applied)
    )


def everything_operation() -> Operation:
    """The FHIR `Patient/[id]/$everything` over what this service stores (owned or replica)."""
    return Operation(
        name="everything",
        levels=frozenset({"instance"}),
        handler=_everything,
        description=(
            "The patient and every current resource stored in this service that refers to "
            "it, in pages (the patient first)."
        ),
        scope="system/*.rs",
        inputs=(
            OperationParam("_since", "instant", documentation="Only resources changed since"),
            OperationParam("_type", "code", max="*", documentation="Only these resource types"),
            OperationParam("_count", "integer", documentation="Page size (at most 1000)"),
            OperationParam("_offset", "integer", documentation="Where the page starts"),
        ),
        outputs=(OperationParam("return", "Bundle", min=1, documentation="A searchset"),),
    )
