"""The programme's outcomes aggregated in SQL: per instrument, the sums the statistics need.

Per counted patient and instrument: the baseline is the latest score on or before the first
dose's start, the latest the latest score after it (ties in time: the larger Observation id).
Per instrument the database returns n, the sums of baselines and latest scores, the sum and
the sum of squares of the changes, and the counts of responders and remitters; no score row
reaches Python.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import CTE, ColumnElement, and_, case, false, func, literal_column, select
from sqlalchemy.orm import Session

from services.outcomes.observations.measures import Measure
from services.outcomes.timeline.tables import SCORES

# DOMAIN §5: response is a reduction of at least 50 % from baseline for these instruments.
HALVING_RESPONSE = frozenset({"phq9-total", "madrs-total"})


@dataclass(frozen=True)
class MeasureSums:
    """One instrument's aggregates over the patients with a baseline and a later score."""

    measure: str
    n: int
    baseline_sum: float
    latest_sum: float
    change_sum: float
    change_squares: float
    responders: int
    remitters: int


def response_rule(measure: Measure) -> str | None:
    """What response means for an instrument, in words; None where it has no response rule."""
    if measure.key in HALVING_RESPONSE:
        return "a reduction of at least 50 % from baseline"
    points = measure.extra.get("clinicallyMeaningfulChange")
    if points is not None:
        return f"a clinically meaningful change: a fall of at least {points} points"
    return None


def _ends(cohort: CTE, *, before: bool) -> CTE:
    """Each patient's score per instrument nearest the first dose: the latest on or before
    it (`before`), or the latest after it."""
    when = (
        SCORES.c.effective <= cohort.c.first_start
        if before
        else SCORES.c.effective > cohort.c.first_start
    )
    ranked = (
        select(
            SCORES.c.patient_id,
            SCORES.c.measure,
            SCORES.c.value,
            func.row_number()
            .over(
                partition_by=(SCORES.c.patient_id, SCORES.c.measure),
                order_by=(SCORES.c.effective.desc(), SCORES.c.obs_id.desc()),
            )
            .label("rank"),
        )
        .join(cohort, cohort.c.patient_id == SCORES.c.patient_id)
        .where(when)
        .subquery()
    )
    name = "baselines" if before else "latest_scores"
    return (
        select(ranked.c.patient_id, ranked.c.measure, ranked.c.value)
        .where(ranked.c.rank == 1)
        .cte(name)
    )


def measure_sums(session: Session, cohort: CTE, measures: dict[str, Measure]) -> list[MeasureSums]:
    """Per instrument with at least one patient counted: the aggregates, in one query."""
    base, last = _ends(cohort, before=True), _ends(cohort, before=False)
    change = last.c.value - base.c.value
    responded: list[ColumnElement[bool]] = []
    remitted: list[ColumnElement[bool]] = []
    for key, measure in measures.items():
        if key in HALVING_RESPONSE:
            responded.append(
                and_(base.c.measure == key, base.c.value > 0, change <= -0.5 * base.c.value)
            )
        elif (points := measure.extra.get("clinicallyMeaningfulChange")) is not None:
            responded.append(and_(base.c.measure == key, change <= -float(points)))
        if (below := measure.extra.get("remissionBelow")) is not None:
            remitted.append(and_(base.c.measure == key, last.c.value < float(below)))

    def count(conditions: list[ColumnElement[bool]]) -> ColumnElement[int]:
        if not conditions:
            return literal_column("0")
        return func.sum(case(*((c, 1) for c in conditions), else_=0))

    query = (
        select(
            base.c.measure,
            func.count().label("n"),
            func.sum(base.c.value),
            func.sum(last.c.value),
            func.sum(change),
            func.sum(change * change),
            count(responded),
            count(remitted),
        )
        .select_from(
            base.join(
                last, and_(last.c.patient_id == base.c.patient_id, last.c.measure == base.c.measure)
            )
        )
        .where(base.c.measure.in_(list(measures)) if measures else false())
        .group_by(base.c.measure)
        .order_by(base.c.measure)
    )
    return [
        MeasureSums(
            measure=row[0],
            n=int(row[1]),
            baseline_sum=float(row[2]),
            latest_sum=float(row[3]),
            change_sum=float(row[4]),
            change_squares=float(row[5]),
            responders=int(row[6] or 0),
            remitters=int(row[7] or 0),
        )
        for row in session.execute(query)
    ]
