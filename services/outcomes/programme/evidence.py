"""`GET [base]/$window-evidence`: outcomes of EMDR sessions by their offset after the dose.

Per offset bin: the sessions that took place, the mean within-session SUDS reduction and the
mean per-session PCL-5 change, each with a 95 % t interval (sessions taken as independent);
then a comparison between bins (services/outcomes/statistics/window_model.py states the rule).
It is evidence for the clinicians who set the protocols; it never changes one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.outcomes.programme.bins import OffsetBin, bin_of
from services.outcomes.programme.cohort import cohort, cohort_filters, without_jit
from services.outcomes.programme.parameters import decimal, integer, string
from services.outcomes.programme.sessions import SessionRow, sessions_after_doses
from services.outcomes.programme.setup import FILTERS, Setup, setup
from services.outcomes.statistics.estimates import Estimate
from services.outcomes.statistics.means import mean_interval, moments
from services.outcomes.statistics.window_model import SessionOutcome, compare_bins
from shared.fhir.errors import bad_request
from shared.fhir.operations import (
    Operation,
    OperationCall,
    OperationParam,
    OperationResult,
    Renderer,
)

# The outcome the comparison is on: (its words, whether higher is better, the row's field).
OUTCOMES = {
    "pcl5": ("PCL-5 change", False, "pcl5_change"),
    "suds": ("within-session SUDS reduction", True, "suds_reduction"),
}


def _estimate(prefix: str, count: str, values: list[float]) -> list[dict[str, Any]]:
    """`<prefix>` with `<prefix>Low` and `<prefix>High` (the mean alone from one value), then
    `count`: how many sessions it is over."""
    found = mean_interval(moments(values))
    parts: list[dict[str, Any]] = []
    if isinstance(found, Estimate):
        parts += decimal(prefix, found.value) + decimal(f"{prefix}Low", found.low)
        parts += decimal(f"{prefix}High", found.high)
    elif values:
        parts += decimal(prefix, moments(values).mean)
    return parts + integer(count, len(values))


def _bin(offset_bin: OffsetBin, rows: list[SessionRow]) -> dict[str, Any]:
    suds = [r.suds_reduction for r in rows if r.suds_reduction is not None]
    pcl5 = [r.pcl5_change for r in rows if r.pcl5_change is not None]
    parts = string("label", offset_bin.label) + decimal("fromHours", offset_bin.from_hours)
    parts += decimal("toHours", offset_bin.to_hours) + integer("sessions", len(rows))
    parts += _estimate("sudsReduction", "sudsN", suds) + _estimate("pcl5Change", "pcl5N", pcl5)
    return {"name": "bin", "part": parts}


def _evidence(call: OperationCall) -> OperationResult:
    prepared: Setup = call.prepared
    chosen = call.one("outcome", "pcl5")
    if chosen not in OUTCOMES:
        raise bad_request("'outcome' must be pcl5 or suds", ["outcome"])
    words, higher_is_better, field = OUTCOMES[chosen]
    without_jit(call.session)
    rows = sessions_after_doses(call.session, cohort(cohort_filters(call.inputs)))
    binned: dict[str, list[SessionRow]] = {b.label: [] for b in prepared.bins}
    for row in rows:
        if row.offset_hours is not None:
            binned[bin_of(prepared.bins, row.offset_hours).label].append(row)
    parameters = [_bin(b, binned[b.label]) for b in prepared.bins]
    outcomes = [
        SessionOutcome(r.patient_id, label, value)
        for label, members in binned.items()
        for r in members
        if (value := getattr(r, field)) is not None
    ]
    verdict = compare_bins(outcomes, list(binned), outcome=words, higher_is_better=higher_is_better)
    parts = string("outcome", words) + string("method", verdict.method)
    parts += string("best", verdict.best) + string("conclusion", verdict.conclusion)
    parts += integer("moreSessionsNeeded", verdict.more_sessions_needed)
    parameters.append({"name": "comparison", "part": parts})
    return OperationResult({"resourceType": "Parameters", "parameter": parameters})


def window_evidence_operation(renderers: Mapping[str, Renderer] | None = None) -> Operation:
    """`$window-evidence` at the system level."""
    return Operation(
        name="window-evidence",
        levels=frozenset({"system"}),
        methods=frozenset({"GET"}),
        renderers=renderers or {},
        handler=_evidence,
        prepare=setup,
        description=(
            "EMDR sessions that took place, by offset bin after the dose that opened them "
            "(OUTCOMES_WINDOW_BINS_H): the mean within-session SUDS reduction and the per-session "
            "PCL-5 change with 95 % intervals, and a comparison between bins (a mixed model "
            "with a random intercept per patient, or Welch's tests) that names the best bin "
            "only when the evidence separates it. Evidence for clinicians; it changes no "
            "protocol."
        ),
        scope="system/Observation.rs",
        inputs=(
            *FILTERS,
            OperationParam(
                "outcome",
                "code",
                documentation="What the comparison is on: pcl5 (default) or suds",
            ),
        ),
        outputs=(OperationParam("return", "Parameters", min=1, documentation="The evidence"),),
    )
