"""`GET [base]/$programme-report`: outcomes per instrument and window adherence, programme-wide."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import func, select

from services.outcomes.observations.measures import Measure, outcome_measures
from services.outcomes.programme.aggregates import MeasureSums, measure_sums, response_rule
from services.outcomes.programme.cohort import cohort, cohort_filters, without_jit
from services.outcomes.programme.parameters import decimal, instrument, integer, string
from services.outcomes.programme.sessions import window_adherence
from services.outcomes.programme.setup import FILTERS, Setup, setup
from services.outcomes.statistics.effect_size import paired_hedges_g
from services.outcomes.statistics.estimates import Estimate
from services.outcomes.statistics.means import moments_from_sums
from services.outcomes.statistics.proportions import wilson_interval
from shared.fhir.operations import (
    Operation,
    OperationCall,
    OperationParam,
    OperationResult,
    Renderer,
)


def _measure(sums: MeasureSums, measure: Measure, base: str) -> dict[str, Any]:
    """One `measure` parameter: means, Hedges' g, response and remission with intervals."""
    change = moments_from_sums(sums.n, sums.change_sum, sums.change_squares)
    parts: list[dict[str, Any]] = [instrument(measure, base), *integer("n", sums.n)]
    parts += decimal("baselineMean", sums.baseline_sum / sums.n)
    parts += decimal("latestMean", sums.latest_sum / sums.n)
    parts += decimal("meanChange", change.mean)
    parts += decimal("changeSd", change.sd)
    notes = []
    g = paired_hedges_g(sums.n, change.mean or 0.0, change.sd or 0.0)
    if isinstance(g, Estimate):
        parts += decimal("hedgesG", g.value) + decimal("hedgesGLow", g.low)
        parts += decimal("hedgesGHigh", g.high)
    else:
        notes.append(g.reason)
    rule = response_rule(measure)
    if rule is not None:
        rate = wilson_interval(sums.responders, sums.n)
        if isinstance(rate, Estimate):
            parts += decimal("responseRate", rate.value) + decimal("responseRateLow", rate.low)
            parts += decimal("responseRateHigh", rate.high)
        parts += string("responseDefinition", f"Response: {rule}")
    else:
        notes.append(f"No response rule is defined for the {measure.display}")
    below = measure.extra.get("remissionBelow")
    if below is not None:
        rate = wilson_interval(sums.remitters, sums.n)
        if isinstance(rate, Estimate):
            parts += decimal("remissionRate", rate.value) + decimal("remissionRateLow", rate.low)
            parts += decimal("remissionRateHigh", rate.high)
    else:
        notes.append(f"No remission threshold is defined for the {measure.display}")
    parts += [p for note in notes for p in string("note", note)]
    return {"name": "measure", "part": parts}


def _report(call: OperationCall) -> OperationResult:
    prepared: Setup = call.prepared
    counted = cohort(cohort_filters(call.inputs))
    without_jit(call.session)
    scores = {k: m for k, m in outcome_measures().measures.items() if m.value_type == "score"}
    patients = call.session.execute(select(func.count()).select_from(counted)).scalar_one()
    parameters: list[dict[str, Any]] = integer("patients", int(patients))
    for sums in measure_sums(call.session, counted, scores):
        parameters.append(_measure(sums, scores[sums.measure], prepared.canonical_base))
    sessions, inside = window_adherence(call.session, counted)
    parameters += integer("sessions", sessions)
    adherence = wilson_interval(inside, sessions)
    if isinstance(adherence, Estimate):
        parameters += decimal("windowAdherence", adherence.value)
        parameters += decimal("windowAdherenceLow", adherence.low)
        parameters += decimal("windowAdherenceHigh", adherence.high)
    else:
        parameters += string("note", "No EMDR session has taken place: no window adherence")
    return OperationResult({"resourceType": "Parameters", "parameter": parameters})


def programme_report_operation(renderers: Mapping[str, Renderer] | None = None) -> Operation:
    """`$programme-report` at the system level."""
    return Operation(
        name="programme-report",
        levels=frozenset({"system"}),
        methods=frozenset({"GET"}),
        renderers=renderers or {},
        handler=_report,
        prepare=setup,
        description=(
            "Programme outcomes per instrument over the patients counted from their first "
            "completed dose: baseline (latest score on or before it) and latest (after it) "
            "means, the mean change, paired Hedges' g with its exact 95 % interval (n >= 3), "
            "response and remission rates with Wilson 95 % intervals; and the share of EMDR "
            "sessions that took place inside their dose's optimal window."
        ),
        scope="system/Observation.rs",
        inputs=FILTERS,
        outputs=(OperationParam("return", "Parameters", min=1, documentation="The report"),),
    )
