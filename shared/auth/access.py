"""Practice-level access: which resources a caller's practices may see, as SQL conditions.

A Patient belongs to the practices it names as managingOrganization or generalPractitioner;
a resource of a Patient-compartment type belongs to the patients its compartment params
reference. Both are read from the reference index at query time, so moving a patient to
another practice moves their whole compartment at once. Other types are not patient data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, false, not_, or_, select, true
from sqlalchemy.orm import aliased

from shared.auth.principal import current_principal
from shared.db.models import ReferenceIndex, ResourceRow
from shared.fhir.catalogue import PATIENT_COMPARTMENT, PRACTICE_PARAMS

_PRACTICE_PREFIX = "Organization/"


def restriction() -> frozenset[str] | None:
    """The caller's practices when access is limited to them; None when it is not (system
    work, or a programme-wide token). An empty set sees no patient data."""
    who = current_principal.get()
    return None if who is None else who.practices


def organization_ids(practices: frozenset[str]) -> list[str]:
    """The Organization ids of `Organization/<id>` practice claims."""
    return sorted(p[len(_PRACTICE_PREFIX) :] for p in practices)


def _practice_links(ref: Any, practices: frozenset[str]) -> ColumnElement[bool]:
    """Index rows of Patients naming one of the practices (the `ix_reference_target` prefix)."""
    return and_(
        ref.res_type == "Patient",
        ref.param.in_(PRACTICE_PARAMS),
        ref.target_id.in_(organization_ids(practices)),
        ref.target_type == "Organization",
    )


def visible_patient_ids(practices: frozenset[str]) -> Select[Any]:
    """The ids of the Patients of these practices (uncorrelated: planned once per query)."""
    patient, ref = aliased(ResourceRow), aliased(ReferenceIndex)
    return (
        select(patient.res_id)
        .join(ref, ref.resource_pk == patient.pk)
        .where(_practice_links(ref, practices), patient.res_type == "Patient")
    )


def compartment_links(ref: Any, res_type: str) -> ColumnElement[bool]:
    """Index rows by which a resource of `res_type` references a patient. An untyped
    reference counts as one (fail closed: search treats it as possibly a Patient too)."""
    return and_(
        ref.res_type == res_type,
        ref.param.in_(PATIENT_COMPARTMENT[res_type]),
        ref.target_id.is_not(None),
        or_(ref.target_type == "Patient", ref.target_type.is_(None)),
    )


def visible(
    res_type: str, row: Any = ResourceRow, *, drive: bool = False
) -> ColumnElement[bool] | None:
    """The condition on `row` (a ResourceRow or alias) under which the caller sees a resource
    of `res_type`; None when the caller is not restricted.

    With `drive`, the practices' resources are a set the planner may start from (a query
    with no selective criterion of its own); otherwise each candidate is probed through its
    own index rows, which costs only as much as the candidates.
    """
    practices = restriction()
    if practices is None:
        return None
    if row is ResourceRow:
        return _visible_cached(res_type, practices, drive)
    return _visible(res_type, row, practices, drive)


def patient_data_condition(res_type: str) -> ColumnElement[bool] | None:
    """`visible` on the resource table, or None when nothing is to be checked (the caller
    is not restricted, or the type is not patient data)."""
    practices = restriction()
    if practices is None or (res_type != "Patient" and res_type not in PATIENT_COMPARTMENT):
        return None
    return _visible_cached(res_type, practices, False)


def visible_any(types: Iterable[str], row: Any = ResourceRow) -> ColumnElement[bool] | None:
    """As `visible`, for rows of any of `types` (system history, $everything)."""
    practices = restriction()
    if practices is None:
        return None
    if row is ResourceRow:
        return _visible_any_cached(tuple(sorted(types)), practices)
    return _any(tuple(sorted(types)), row, practices)


def _any(types: tuple[str, ...], row: Any, practices: frozenset[str]) -> ColumnElement[bool]:
    return or_(*(and_(row.res_type == t, _visible(t, row, practices, False)) for t in types))


# Building these conditions costs milliseconds (ORM aliases and adapters), executing them a
# tenth of that; the same caller asks the same questions, so the conditions on the resource
# table itself are built once per type and set of practices (bound values live inside).
@lru_cache(maxsize=1024)
def _visible_cached(res_type: str, practices: frozenset[str], drive: bool) -> ColumnElement[bool]:
    return _visible(res_type, ResourceRow, practices, drive)


@lru_cache(maxsize=256)
def _visible_any_cached(types: tuple[str, ...], practices: frozenset[str]) -> ColumnElement[bool]:
    return _any(types, ResourceRow, practices)


def _probe(row: Any, condition: Callable[[Any], ColumnElement[bool]]) -> ColumnElement[bool]:
    """Whether one of the row's own reference index rows meets `condition`."""
    ref = aliased(ReferenceIndex)
    return (
        select(ref.resource_pk)
        .where(ref.resource_pk == row.pk, condition(ref))
        .correlate(row)
        # SQLite, without statistics, would otherwise scan the value index per candidate.
        .with_hint(ref, "INDEXED BY ix_reference_resource", dialect_name="sqlite")
        .exists()
    )


def _visible(
    res_type: str, row: Any, practices: frozenset[str], drive: bool
) -> ColumnElement[bool]:
    if res_type != "Patient" and res_type not in PATIENT_COMPARTMENT:
        return true()  # not patient data
    if not practices:
        return false()
    ref = aliased(ReferenceIndex)
    if res_type == "Patient":
        if drive:
            return row.pk.in_(select(ref.resource_pk).where(_practice_links(ref, practices)))
        return _probe(row, lambda r: _practice_links(r, practices))
    patients = visible_patient_ids(practices)
    # Linked to one of the practices' patients ...
    if drive:
        linked = row.pk.in_(
            select(ref.resource_pk).where(
                compartment_links(ref, res_type), ref.target_id.in_(patients)
            )
        )
    else:
        linked = _probe(
            row, lambda r: and_(compartment_links(r, res_type), r.target_id.in_(patients))
        )
    # ... and to no patient outside them.
    elsewhere = _probe(
        row, lambda r: and_(compartment_links(r, res_type), r.target_id.not_in(patients))
    )
    return and_(linked, not_(elsewhere))
