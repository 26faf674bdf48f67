"""Per measure: baseline, latest, change, band, response, remission (DOMAIN §5 via measures.json).

The rules' numbers come from the measures file: `bands`, `remissionBelow`,
`clinicallyMeaningfulChange` (a drop of at least that many points) and
`responseReductionPercent` (a reduction of at least that share of the baseline).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from services.outcomes.observations.measures import Band, Measure
from services.outcomes.summary.timeline import Score

_PERCENT_STEP = Decimal("0.1")


def number(value: float) -> Decimal:
    """A stored score as a decimal without binary noise (12.0 -> 12, 2.5 -> 2.5)."""
    return Decimal(int(value)) if value.is_integer() else Decimal(repr(value))


@dataclass(frozen=True)
class MeasureSummary:
    """One instrument's course for one patient; None where a part does not apply."""

    measure: Measure
    baseline: Score
    latest: Score | None
    change: Decimal | None
    percent_change: Decimal | None
    severity_band: Band | None
    response: bool | None
    remission: bool | None
    clinically_meaningful_change: bool | None


def baseline_of(scores: list[Score], first_dose: datetime | None) -> Score:
    """The latest score on or before the first dose; else (no dose, or none before it) the
    earliest score. `scores` are in time order and not empty."""
    if first_dose is not None:
        before = [s for s in scores if s.effective <= first_dose]
        if before:
            return before[-1]
    return scores[0]


def band_of(measure: Measure, value: Decimal) -> Band | None:
    """The severity band a value falls in (bands are whole-point ranges)."""
    for band in measure.bands:
        if band.min <= value < band.max + 1:
            return band
    return None


def summarise(measure: Measure, scores: list[Score], first_dose: datetime | None) -> MeasureSummary:
    """The summary of one measure's scores (in time order, at least one)."""
    baseline = baseline_of(scores, first_dose)
    after = [s for s in scores if s.effective > baseline.effective]
    latest = after[-1] if after else None
    start = number(baseline.value)
    change = percent = response = remission = meaningful = None
    if latest is not None:
        end = number(latest.value)
        change = end - start
        if start != 0:
            percent = (100 * change / start).quantize(_PERCENT_STEP, rounding=ROUND_HALF_UP)
        reduction = measure.extra.get("responseReductionPercent")
        if reduction is not None and start > 0:
            response = 100 * -change >= Decimal(str(reduction)) * start
        below = measure.extra.get("remissionBelow")
        if below is not None:
            remission = end < Decimal(str(below))
        meaningful_drop = measure.extra.get("clinicallyMeaningfulChange")
        if meaningful_drop is not None:
            meaningful = -change >= Decimal(str(meaningful_drop))
    shown = number(latest.value) if latest is not None else start
    return MeasureSummary(
        measure=measure,
        baseline=baseline,
        latest=latest,
        change=change,
        percent_change=percent,
        severity_band=band_of(measure, shown) if measure.bands else None,
        response=response,
        remission=remission,
        clinically_meaningful_change=meaningful,
    )
