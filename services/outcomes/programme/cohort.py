"""The patients a programme figure counts: each one's first completed dose, under the filters.

A patient counts from their first completed dose (the earliest start); `period`, `protocol`
and `route` describe that dose. A caller limited to practices counts only their patients, and
`practice` narrows further.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import CTE, ColumnElement, func, select
from sqlalchemy import text as sql
from sqlalchemy.orm import Session

from services.outcomes.timeline.tables import DOSES
from shared.auth.access import restriction, visible_patient_ids
from shared.db.models import ResourceRow
from shared.fhir.dates import DateFormatError, date_range
from shared.fhir.errors import bad_request
from shared.fhir.lexical import ID_PATTERN

_PERIOD = re.compile(r"^(eq|ge|gt|le|lt)?(.+)$")
_PRACTICE = "Organization/"


@dataclass(frozen=True)
class CohortFilters:
    """The checked filters: conditions on the first dose's start, its protocol and route."""

    period: list[tuple[str, datetime, datetime]] = field(default_factory=list)
    protocols: list[str] = field(default_factory=list)
    routes: list[str] = field(default_factory=list)
    practices: list[str] = field(default_factory=list)  # `Organization/<id>`


def cohort_filters(inputs: dict[str, list[Any]]) -> CohortFilters:
    """Check the filter inputs; 400 naming the parameter at fault."""
    period = []
    for text in inputs.get("period", []):
        match = _PERIOD.fullmatch(text)
        try:
            if match is None:
                raise DateFormatError(text)
            prefix, rest = match.groups()
            low, high = date_range(rest)
        except DateFormatError:
            raise bad_request(
                f"'period' must be a date with an optional prefix eq, ge, gt, le or lt "
                f"(e.g. ge2026-01-01), not '{text[:40]}'",
                ["period"],
            ) from None
        period.append((prefix or "eq", low, high))
    practices = []
    for text in inputs.get("practice", []):
        ident = text[len(_PRACTICE) :] if text.startswith(_PRACTICE) else text
        if not ID_PATTERN.fullmatch(ident):
            raise bad_request(
                "'practice' must be an Organization reference or id, e.g. Organization/a",
                ["practice"],
            )
        practices.append(_PRACTICE + ident)
    return CohortFilters(
        period=period,
        protocols=_any_of(inputs.get("protocol", [])),
        routes=_any_of(inputs.get("route", [])),
        practices=practices,
    )


def _any_of(values: list[str]) -> list[str]:
    """Repeated values and comma-separated ones alike mean any of them."""
    return [part for value in values for part in value.split(",") if part]


def _period_condition(start: Any, prefix: str, low: datetime, high: datetime) -> Any:
    return {
        "eq": lambda: start.between(low, high),
        "ge": lambda: start >= low,
        "gt": lambda: start > high,
        "le": lambda: start <= high,
        "lt": lambda: start < low,
    }[prefix]()


def without_jit(session: Session) -> None:
    """PostgreSQL's JIT compiles these aggregations for longer than they run (0.4-0.8 s on a
    million scores): off for this transaction only."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(sql("SET LOCAL jit = off"))


def cohort(filters: CohortFilters) -> CTE:
    """A CTE of (patient_id, first_start): each counted patient and their first dose's start."""
    ranked = select(
        DOSES.c.patient_id,
        DOSES.c.start,
        DOSES.c.protocol,
        DOSES.c.route,
        func.row_number()
        .over(partition_by=DOSES.c.patient_id, order_by=(DOSES.c.start, DOSES.c.dose_id))
        .label("rank"),
    ).subquery("ranked_doses")
    conditions: list[ColumnElement[bool]] = [ranked.c.rank == 1]
    conditions += [_period_condition(ranked.c.start, *p) for p in filters.period]
    if filters.protocols:
        conditions.append(ranked.c.protocol.in_(filters.protocols))
    if filters.routes:
        conditions.append(ranked.c.route.in_(filters.routes))
    # A patient deleted at intake has left the programme's figures, for every caller.
    conditions.append(
        ranked.c.patient_id.in_(
            select(ResourceRow.res_id).where(
                ResourceRow.res_type == "Patient", ResourceRow.deleted.is_(False)
            )
        )
    )
    limited = restriction()
    if limited is not None:
        conditions.append(ranked.c.patient_id.in_(visible_patient_ids(limited)))
    if filters.practices:
        conditions.append(
            ranked.c.patient_id.in_(visible_patient_ids(frozenset(filters.practices)))
        )
    return (
        select(ranked.c.patient_id, ranked.c.start.label("first_start"))
        .where(*conditions)
        .cte("cohort")
    )
