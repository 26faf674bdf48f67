"""Run a parsed search against the index tables: filters, sorting, paging, includes."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import MAX_EMAX, MIN_EMIN, Context, Decimal
from typing import Any

from sqlalchemy import ColumnElement, and_, case, false, func, not_, or_, select, true
from sqlalchemy.orm import Session

from shared.auth.access import visible
from shared.db.models import INDEX_TABLES, ReferenceIndex, ResourceRow
from shared.fhir import exact_json
from shared.fhir.dates import MAX, MIN, utcnow
from shared.fhir.indexing import normalise
from shared.fhir.number_keys import order_key
from shared.fhir.references import parse_reference
from shared.fhir.search import Clause, Include, SearchQuery, Value

# How many rounds of _include:iterate / _revinclude:iterate are followed at most.
MAX_ITERATIONS = 4
# At most this many resources are added by _include / _revinclude to one page.
MAX_INCLUDED = 1000
# Ids per IN list when fetching included resources.
IN_CHUNK = 500


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _date_condition(low: Any, high: Any, value: Value) -> ColumnElement[bool]:
    pl, ph = value.low, value.high
    prefix = value.prefix
    if prefix == "eq":
        return and_(low >= pl, high <= ph)
    if prefix == "ne":
        return not_(and_(low >= pl, high <= ph))
    if prefix == "gt":
        return high > ph
    if prefix == "lt":
        return low < pl
    if prefix == "ge":
        return high >= pl
    if prefix == "le":
        return low <= ph
    if prefix == "sa":
        return low > ph
    if prefix == "eb":
        return high < pl
    # ap: overlap, widened by 10 % of the distance from now (at least a day), as the spec hints.
    slack = max(abs(utcnow() - pl) / 10, timedelta(days=1))
    return and_(low <= _shift(ph, slack), high >= _shift(pl, -slack))


def _shift(moment: datetime, by: timedelta) -> datetime:
    """moment + by, kept within the range a datetime can hold."""
    try:
        return moment + by
    except OverflowError:
        return MAX if by > timedelta(0) else MIN


def _number_condition(column: Any, value: Value) -> ColumnElement[bool]:
    """Compare order keys: exact at any precision (see number_keys)."""
    number = value.number
    assert number is not None
    exponent = number.as_tuple().exponent
    half = Decimal(5).scaleb(exponent - 1) if isinstance(exponent, int) else Decimal(0)
    # Enough digits that n ± half and n ± n/10 are exact, not rounded to 28 digits.
    exact = Context(prec=len(number.as_tuple().digits) + 3, Emin=MIN_EMIN, Emax=MAX_EMAX)
    n = order_key(number)
    lo, hi = order_key(exact.subtract(number, half)), order_key(exact.add(number, half))
    prefix = value.prefix
    if prefix == "eq":
        return and_(column >= lo, column < hi)
    if prefix == "ne":
        return or_(column < lo, column >= hi)
    if prefix in ("gt", "sa"):
        return column > n
    if prefix in ("lt", "eb"):
        return column < n
    if prefix == "ge":
        return column >= n
    if prefix == "le":
        return column <= n
    slack = exact.scaleb(exact.abs(number), -1)
    low, high = order_key(exact.subtract(number, slack)), order_key(exact.add(number, slack))
    return and_(column >= low, column <= high)


def _value_condition(clause: Clause, table: Any, value: Value) -> ColumnElement[bool]:
    kind = clause.param.type
    if kind == "uri":
        if clause.modifier == "below":
            return table.code.like(f"{_like_escape(value.text[:255])}%", escape="\\")
        return and_(table.system.is_(None), table.code == value.text[:255])
    if kind == "token":
        parts = []
        if value.system is not None:
            parts.append(
                table.system.is_(None) if value.system == "" else table.system == value.system
            )
        if value.code is not None:
            parts.append(table.code == value.code[:255])
        return and_(true(), *parts)
    if kind == "string":
        if clause.modifier == "exact":
            return table.exact == value.text
        pattern = _like_escape(normalise(value.text))
        if clause.modifier == "contains":
            return table.norm.like(f"%{pattern}%", escape="\\")
        return table.norm.like(f"{pattern}%", escape="\\")
    if kind == "date":
        return _date_condition(table.low, table.high, value)
    if kind == "quantity":
        parts = [_number_condition(table.value_key, value)]
        if value.system:
            parts.append(table.system == value.system)
            if value.code:
                parts.append(table.code == value.code)
        elif value.code:
            parts.append(or_(table.code == value.code, table.unit == value.code))
        return and_(*parts)
    # reference
    ref_type, ref_id = parse_reference(value.text)
    ref_type = value.ref_type or ref_type
    canonical = _canonical_condition(table, value.text)
    if ref_id is None:
        return canonical
    parts = [table.target_id == ref_id]
    if ref_type is not None:
        parts.append(or_(table.target_type == ref_type, table.target_type.is_(None)))
    return or_(and_(*parts), canonical)


def _canonical_condition(table: Any, text: str) -> ColumnElement[bool]:
    """A reference to a canonical: `url|version` matches exactly; a bare `url` matches every
    version of it (the canonical written with or without one)."""
    exact = and_(table.target_id.is_(None), table.url == text)
    if "|" in text:
        return exact
    return or_(
        exact,
        and_(table.target_id.is_(None), table.url.like(f"{_like_escape(text)}|%", escape="\\")),
    )


def _special_condition(clause: Clause) -> ColumnElement[bool]:
    name = clause.param.name
    if clause.missing is not None:
        return false() if clause.missing else true()
    if name == "_id":
        condition = or_(*(ResourceRow.res_id == (v.code or "") for v in clause.values))
        return not_(condition) if clause.modifier == "not" else condition
    return or_(
        *(
            _date_condition(ResourceRow.last_updated, ResourceRow.last_updated, v)
            for v in clause.values
        )
    )


# How selective a clause usually is: the most selective one drives the query.
_SELECTIVITY = {"reference": 0, "token": 1, "string": 2, "quantity": 3, "date": 4}


def _driving(clause: Clause) -> int:
    if clause.missing is not None or clause.modifier == "not":
        return 99
    if clause.param.name == "_id":
        return -1
    if clause.param.name.startswith("_"):
        return 98
    return _SELECTIVITY.get(clause.param.kind, 50)


def clause_condition(resource_type: str, clause: Clause, *, drive: bool = False) -> Any:
    """The SQL condition on ResourceRow for one search clause.

    The driving clause is `pk IN (index lookup)`, so the search starts from its index; the
    others are correlated EXISTS probes of the candidates (SQLite otherwise scans the type).
    """
    if clause.param.name.startswith("_"):
        return _special_condition(clause)
    table = INDEX_TABLES[clause.param.kind]
    scope = and_(table.res_type == resource_type, table.param == clause.param.name)
    # Probes go through the per-resource index; SQLite's planner, without statistics,
    # would pick the value index and scan it for every candidate.
    probe_hint = f"INDEXED BY ix_{clause.param.kind}_resource"
    if clause.missing is not None:
        any_row = (
            select(table.resource_pk)
            .where(table.resource_pk == ResourceRow.pk, scope)
            .with_hint(table, probe_hint, dialect_name="sqlite")
            .exists()
        )
        return not_(any_row) if clause.missing else any_row
    alternatives = or_(*(_value_condition(clause, table, v) for v in clause.values))
    if drive:
        return ResourceRow.pk.in_(select(table.resource_pk).where(scope, alternatives))
    matched = (
        select(table.resource_pk)
        .where(table.resource_pk == ResourceRow.pk, scope, alternatives)
        .with_hint(table, probe_hint, dialect_name="sqlite")
        .exists()
    )
    return not_(matched) if clause.modifier == "not" else matched


def search_conditions(query: SearchQuery) -> list[Any]:
    """All conditions of a search, the most selective clause first as the driver."""
    conditions: list[Any] = [
        ResourceRow.res_type == query.resource_type,
        ResourceRow.deleted.is_(False),
    ]
    ordered = sorted(query.clauses, key=_driving)
    for index, clause in enumerate(ordered):
        drive = index == 0 and _driving(clause) < 50 and not clause.param.name.startswith("_")
        conditions.append(clause_condition(query.resource_type, clause, drive=drive))
    # A reference or _id criterion leaves few candidates, each cheap to probe; otherwise the
    # caller's practices' resources are the smaller set to start from.
    pinpointed = any(_driving(clause) <= 0 for clause in query.clauses)
    return _limited(conditions, query.resource_type, drive=not pinpointed)


def _limited(conditions: list[Any], res_type: str, *, drive: bool = False) -> list[Any]:
    """The conditions, plus what the caller's practices may see of `res_type`."""
    condition = visible(res_type, drive=drive)
    return conditions if condition is None else [*conditions, condition]


def _sort_key(name: str, descending: bool, definition: Any) -> Any:
    """The value a resource sorts by: its lowest value ascending, its highest descending."""
    if name == "_lastUpdated":
        return ResourceRow.last_updated
    if name == "_id":
        return ResourceRow.res_id
    param = definition.param(name)
    table = INDEX_TABLES[param.kind]
    column = {
        "date": (table.high if descending else table.low) if param.type == "date" else None,
        "string": getattr(table, "norm", None),
        "token": getattr(table, "code", None),
        "quantity": getattr(table, "value_key", None),
        "reference": getattr(table, "target_id", None),
    }[param.kind]
    aggregate = func.max(column) if descending else func.min(column)
    return (
        select(aggregate)
        .where(table.resource_pk == ResourceRow.pk, table.param == name)
        .correlate(ResourceRow)
        .scalar_subquery()
    )


def run_search(
    session: Session, query: SearchQuery, definition: Any
) -> tuple[list[ResourceRow], int | None]:
    """The page of matching current resources and the total (None when not asked for)."""
    conditions = search_conditions(query)
    total = None
    if query.total != "none" or query.summary_count:
        total = int(
            session.execute(
                select(func.count()).select_from(ResourceRow).where(*conditions)
            ).scalar_one()
        )
    if query.summary_count or query.count == 0:
        query.more = False
        return [], total
    order: list[Any] = []
    for name, descending in query.sort:
        key = _sort_key(name, descending, definition)
        # Resources without a value come last either way (the backends disagree otherwise).
        order.append(case((key.is_(None), 1), else_=0))
        order.append(key.desc() if descending else key.asc())
    # A unique tie-breaker keeps pages stable, so following `next` sees each match once.
    order.append(ResourceRow.pk.asc())
    rows = list(
        session.execute(
            select(ResourceRow)
            .where(*conditions)
            .order_by(*order)
            .limit(query.count + 1)  # one more tells whether a next page exists
            .offset(query.offset)
        )
        .scalars()
        .all()
    )
    query.more = len(rows) > query.count
    return rows[: query.count], total


def included(
    session: Session, rows: list[ResourceRow], query: SearchQuery, served: set[str]
) -> list[dict[str, Any]]:
    """Resources named by _include / _revinclude, limited to the types this service stores.

    `:iterate` includes are applied again to what was included, a few rounds at most.
    """
    if not rows:
        return []
    primary = {(row.res_type, row.res_id) for row in rows}
    found: dict[tuple[str, str], ResourceRow] = {}
    current = list(rows)
    for round_ in range(MAX_ITERATIONS + 1):
        added: dict[tuple[str, str], ResourceRow] = {}
        for include in query.includes:
            if include.stored and (round_ == 0 or include.iterate):
                _include(session, current, include, served, added)
        for include in query.revincludes:
            if include.stored and (round_ == 0 or include.iterate):
                _revinclude(session, current, include, added)
        new = {key: row for key, row in added.items() if key not in primary and key not in found}
        found.update(new)
        if not new or len(found) >= MAX_INCLUDED:
            break
        current = list(new.values())
    return [exact_json.loads(row.content) for row in list(found.values())[:MAX_INCLUDED]]


def _include(
    session: Session,
    rows: list[ResourceRow],
    include: Include,
    served: set[str],
    found: dict[tuple[str, str], ResourceRow],
) -> None:
    pks = [row.pk for row in rows if row.res_type == include.source_type]
    if not pks:
        return
    refs = session.execute(
        select(ReferenceIndex.target_type, ReferenceIndex.target_id)
        .where(
            ReferenceIndex.resource_pk.in_(pks),
            ReferenceIndex.res_type == include.source_type,
            ReferenceIndex.param == include.param.name,
        )
        .distinct()
    ).all()
    wanted: dict[str, set[str]] = {}
    for target_type, target_id in refs:
        if target_type is None or target_id is None or target_type not in served:
            continue  # a type stored in another service is simply absent
        if include.target_type and target_type != include.target_type:
            continue
        wanted.setdefault(target_type, set()).add(target_id)
    for target_type, ids in wanted.items():
        ordered = sorted(ids)
        # A page's references may outnumber the bound parameters a statement can take.
        for start in range(0, len(ordered), IN_CHUNK):
            conditions = [
                ResourceRow.res_type == target_type,
                ResourceRow.res_id.in_(ordered[start : start + IN_CHUNK]),
                ResourceRow.deleted.is_(False),
            ]
            targets = session.execute(
                select(ResourceRow).where(*_limited(conditions, target_type))
            ).scalars()
            for row in targets:
                found.setdefault((row.res_type, row.res_id), row)


def _revinclude(
    session: Session,
    rows: list[ResourceRow],
    include: Include,
    found: dict[tuple[str, str], ResourceRow],
) -> None:
    by_type: dict[str, list[str]] = {}
    for row in rows:
        by_type.setdefault(row.res_type, []).append(row.res_id)
    for target_type, ids in by_type.items():
        if include.param.targets and target_type not in include.param.targets:
            continue
        conditions = [
            ResourceRow.res_type == include.source_type,
            ResourceRow.deleted.is_(False),
            ReferenceIndex.res_type == include.source_type,
            ReferenceIndex.param == include.param.name,
            ReferenceIndex.target_id.in_(ids),
            or_(ReferenceIndex.target_type == target_type, ReferenceIndex.target_type.is_(None)),
        ]
        matches = session.execute(
            select(ResourceRow)
            .join(ReferenceIndex, ReferenceIndex.resource_pk == ResourceRow.pk)
            .where(*_limited(conditions, include.source_type))
            .order_by(ResourceRow.pk)
        ).scalars()
        for row in matches:
            found.setdefault((row.res_type, row.res_id), row)
