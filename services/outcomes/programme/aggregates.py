"""The programme's outcomes aggregated in SQL: per instrument, the sums the statistics need.

Per counted patient and instrument: the baseline is the latest score on or before the first
dose's start, the latest the latest score after it (ties in time: the larger Observation id).
Per instrument the database returns n, the sums of baselines and latest scores, the sum and
the sum of squares of the changes, and the counts of responders and remitters; no score row
reaches Python.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import (
    CTE,
    ColumnElement,
    ScalarSelect,
    and_,
    case,
    func,
    literal,
    literal_column,
    select,
    true,
    union_all,
)
from sqlalchemy.orm import Session, aliased

from services.outcomes.observations.measures import Measure
from services.outcomes.timeline.tables import SCORES

# The handbook: response is a reduction of at least 50 % from baseline for these instruments
# (unless measures.json gives `responseReductionPercent`).
HALVING_RESPONSE = frozenset({"phq9-total", "madrs-total"})


def response_percent(measure: Measure) -> float | None:
    """The reduction from baseline, in percent, that counts as a response (None: no rule)."""
    percent = measure.extra.get("responseReductionPercent")
    if percent is None and measure.key in HALVING_RESPONSE:
        percent = 50
    return None if percent is None else float(percent)


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
    percent = response_percent(measure)
    if percent is not None:
        return f"a reduction of at least {percent:g} % from baseline"
    points = measure.extra.get("clinicallyMeaningfulChange")
    if points is not None:
        return f"a clinically meaningful change: a fall of at least {points} points"
    return None


def _nearest(source: CTE, *, before: bool) -> ScalarSelect[float]:
    """The score of `source`'s patient and instrument nearest its first dose: the latest on or
    before it, or the latest after it; one probe of the covering index (patient, measure,
    effective, obs_id, value), which also breaks ties in time by the larger id."""
    scores = aliased(SCORES)
    when = (
        scores.c.effective <= source.c.first_start
        if before
        else scores.c.effective > source.c.first_start
    )
    return (
        select(scores.c.value)
        .where(
            scores.c.patient_id == source.c.patient_id,
            scores.c.measure == source.c.measure,
            when,
        )
        .order_by(scores.c.effective.desc(), scores.c.obs_id.desc())
        .limit(1)
        .correlate(source)
        .scalar_subquery()
    )


def _pairs(cohort: CTE, keys: list[str]) -> CTE:
    """Each counted patient and instrument that has a baseline, with the latest score (NULL
    when none): the latest is looked up only where a baseline exists (SUDS, VOC and CADSS
    rarely have a pre-dose score), however many scores each patient has."""
    instruments = union_all(*(select(literal(key).label("measure")) for key in keys)).subquery()
    grid = (
        select(cohort.c.patient_id, cohort.c.first_start, instruments.c.measure)
        .select_from(cohort.join(instruments, true()))
        .cte("grid")
    )
    baselines = (
        select(
            grid.c.patient_id,
            grid.c.first_start,
            grid.c.measure,
            _nearest(grid, before=True).label("baseline"),
        )
        .cte("baselines")
        # Computed once per pair: inlined, each use of a value would probe the index again.
        .prefix_with("MATERIALIZED", dialect="postgresql")
    )
    return (
        select(
            baselines.c.patient_id,
            baselines.c.measure,
            baselines.c.baseline,
            _nearest(baselines, before=False).label("latest"),
        )
        .where(baselines.c.baseline.is_not(None))
        .cte("pairs")
        .prefix_with("MATERIALIZED", dialect="postgresql")
    )


def measure_sums(session: Session, cohort: CTE, measures: dict[str, Measure]) -> list[MeasureSums]:
    """Per instrument with at least one patient counted: the aggregates, in one query."""
    if not measures:
        return []
    pairs = _pairs(cohort, sorted(measures))
    baseline, latest, instrument = pairs.c.baseline, pairs.c.latest, pairs.c.measure
    change = latest - baseline
    responded: list[ColumnElement[bool]] = []
    remitted: list[ColumnElement[bool]] = []
    for key, measure in measures.items():
        if (percent := response_percent(measure)) is not None:
            share = percent / 100.0
            responded.append(and_(instrument == key, baseline > 0, change <= -share * baseline))
        elif (points := measure.extra.get("clinicallyMeaningfulChange")) is not None:
            responded.append(and_(instrument == key, change <= -float(points)))
        if (below := measure.extra.get("remissionBelow")) is not None:
            remitted.append(and_(instrument == key, latest < float(below)))

    def count(conditions: list[ColumnElement[bool]]) -> ColumnElement[int]:
        if not conditions:
            return literal_column("0")
        return func.sum(case(*((c, 1) for c in conditions), else_=0))

    query = (
        select(
            instrument,
            func.count().label("n"),
            func.sum(baseline),
            func.sum(latest),
            func.sum(change),
            func.sum(change * change),
            count(responded),
            count(remitted),
        )
        .where(baseline.is_not(None), latest.is_not(None))
        .group_by(instrument)
        .order_by(instrument)
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
