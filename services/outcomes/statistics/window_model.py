"""Which offset bin works best: a comparison of per-session outcomes between bins.

The rule, exactly:
- Bins with fewer than 2 sessions take no part.
- Method: a linear mixed model, outcome ~ bin with a random intercept per patient (statsmodels
  MixedLM, REML), when at least 3 patients, some patient with 2 sessions or more, and a fit
  that converges with a finite covariance. Otherwise, Welch's t test between each pair of bins
  (sessions taken as independent). `method` says which was used.
- Every pair of bins is contrasted (Wald z for the model's fixed effects, Welch's t otherwise)
  and the p-values are Holm-corrected together. The bin with the best estimate is named best
  only when its contrast with every other bin has a corrected p below 0.05.
- Otherwise the data cannot tell yet. How many more sessions: for each bin not separated from
  the leader, the sessions per bin a two-sample t test needs (statsmodels TTestIndPower) to
  find the observed difference at 80 % power, two-sided, alpha 0.05 divided by the number of
  pairs (Bonferroni, Holm's strictest step), with the pooled within-bin sd; the shortfall of
  the pair's two bins, the largest over those bins, and at least 1.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from services.outcomes.statistics.lazy import scipy_stats, statsmodels_api
from services.outcomes.statistics.means import moments

ALPHA = 0.05
POWER = 0.8
MIN_SESSIONS_PER_BIN = 2
MIN_PATIENTS_FOR_MODEL = 3
MIXED_MODEL = (
    "linear mixed model (outcome ~ bin, random intercept per patient; statsmodels MixedLM, "
    "REML); pairwise Wald contrasts, Holm-corrected at 0.05"
)
WELCH = (
    "Welch's t test between each pair of bins (sessions as independent; the mixed model "
    "could not be fitted: {why}); Holm-corrected at 0.05"
)


@dataclass(frozen=True)
class SessionOutcome:
    """One EMDR session's outcome, the patient it belongs to and its offset bin."""

    patient_id: str
    bin: str
    value: float


@dataclass(frozen=True)
class Comparison:
    """The verdict between bins: the method used, the best bin if separated, in words."""

    method: str
    conclusion: str
    best: str | None = None
    more_sessions_needed: int | None = None


@dataclass(frozen=True)
class _Fit:
    method: str
    estimates: dict[str, float]
    # (bin a, bin b) -> uncorrected two-sided p of a vs b.
    p_values: dict[tuple[str, str], float]


def compare_bins(
    rows: Sequence[SessionOutcome],
    bins: Sequence[str],
    *,
    outcome: str,
    higher_is_better: bool,
) -> Comparison:
    """Name the best bin for `outcome` only when the evidence separates it from every other."""
    by_bin = {b: [r for r in rows if r.bin == b] for b in bins}
    compared = [b for b in bins if len(by_bin[b]) >= MIN_SESSIONS_PER_BIN]
    if len(compared) < 2:
        return Comparison(
            method="none: fewer than two bins with 2 sessions or more",
            conclusion=(
                f"The data cannot tell yet: comparing {outcome} between bins needs at least "
                f"{MIN_SESSIONS_PER_BIN} sessions in each of two bins or more."
            ),
        )
    used = [r for r in rows if r.bin in compared]
    fit = _fit(used, compared)
    sign = 1.0 if higher_is_better else -1.0
    leader = max(compared, key=lambda b: sign * fit.estimates[b])
    pairs = list(fit.p_values)
    corrected = dict(
        zip(
            pairs,
            statsmodels_api().multipletests([fit.p_values[p] for p in pairs], method="holm")[1],
            strict=True,
        )
    )
    unseparated = [
        b for b in compared if b != leader and corrected[_pair(leader, b, pairs)] >= ALPHA
    ]
    lead = f"{leader} ({fit.estimates[leader]:.2f})"
    if not unseparated:
        return Comparison(
            method=fit.method,
            best=leader,
            conclusion=(
                f"Sessions {leader} after a dose show the best mean {outcome} "
                f"({fit.estimates[leader]:.2f}), separated from every other bin. Evidence for "
                "the protocol's authors to weigh; it changes no protocol by itself."
            ),
        )
    more = _more_sessions(by_bin, leader, unseparated, fit.estimates, len(pairs))
    others = ", ".join(f"{b} ({fit.estimates[b]:.2f})" for b in unseparated)
    tail = (
        f" About {more} more session{'s' if more != 1 else ''} would be needed "
        "(80 % power, two-sided)."
        if more is not None
        else " No difference is seen yet, so no number of sessions can be estimated."
    )
    return Comparison(
        method=fit.method,
        more_sessions_needed=more,
        conclusion=(
            f"The data cannot tell yet which bin works best for {outcome}: {lead} leads "
            f"but is not separated from {others}.{tail}"
        ),
    )


def _pair(a: str, b: str, pairs: list[tuple[str, str]]) -> tuple[str, str]:
    return (a, b) if (a, b) in pairs else (b, a)


def _fit(rows: Sequence[SessionOutcome], bins: Sequence[str]) -> _Fit:
    """The mixed model when it can be fitted, else Welch's tests."""
    why = _mixed_model_unfit(rows)
    if why is None:
        fitted = _mixed_model(rows, bins)
        if isinstance(fitted, _Fit):
            return fitted
        why = fitted
    return _welch(rows, bins, why)


def _mixed_model_unfit(rows: Sequence[SessionOutcome]) -> str | None:
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.patient_id] = counts.get(r.patient_id, 0) + 1
    if len(counts) < MIN_PATIENTS_FOR_MODEL:
        return f"fewer than {MIN_PATIENTS_FOR_MODEL} patients"
    if max(counts.values()) < 2:
        return "no patient has two sessions, so the patient effect cannot be told from noise"
    return None


def _mixed_model(rows: Sequence[SessionOutcome], bins: Sequence[str]) -> _Fit | str:
    """Fit outcome ~ bin + (1 | patient); the reason in words when the fit fails."""
    y = np.array([r.value for r in rows], dtype=float)
    # Intercept = the first bin; one indicator per further bin.
    x = np.column_stack(
        [np.ones(len(rows))] + [[1.0 if r.bin == b else 0.0 for r in rows] for b in bins[1:]]
    )
    groups = np.array([r.patient_id for r in rows])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            result = statsmodels_api().MixedLM(y, x, groups=groups).fit(reml=True)
        except (np.linalg.LinAlgError, ValueError) as exc:
            return f"the fit failed ({type(exc).__name__})"
    k = x.shape[1]
    beta = np.asarray(result.fe_params, dtype=float)
    cov = np.asarray(result.cov_params(), dtype=float)[:k, :k]
    if not result.converged or not np.all(np.isfinite(cov)) or np.any(np.diag(cov) <= 0):
        return "the fit did not converge to a usable covariance (singular)"
    # The mean of each bin as a contrast vector on (intercept, bin indicators).
    vectors = {b: np.eye(k)[0] + (np.eye(k)[i] if i else 0) for i, b in enumerate(bins)}
    estimates = {b: float(vectors[b] @ beta) for b in bins}
    p_values = {}
    for a, b in combinations(bins, 2):
        contrast = vectors[a] - vectors[b]
        se = math.sqrt(float(contrast @ cov @ contrast))
        p_values[(a, b)] = float(2 * scipy_stats().norm.sf(abs(contrast @ beta) / se))
    return _Fit(MIXED_MODEL, estimates, p_values)


def _welch(rows: Sequence[SessionOutcome], bins: Sequence[str], why: str) -> _Fit:
    values = {b: [r.value for r in rows if r.bin == b] for b in bins}
    estimates = {b: float(np.mean(values[b])) for b in bins}
    p_values = {}
    for a, b in combinations(bins, 2):
        if np.std(values[a]) == 0 and np.std(values[b]) == 0:
            # No spread in either: any difference is exact (or there is none).
            p_values[(a, b)] = 0.0 if estimates[a] != estimates[b] else 1.0
            continue
        test = scipy_stats().ttest_ind(values[a], values[b], equal_var=False)
        p_values[(a, b)] = float(test.pvalue)
    return _Fit(WELCH.format(why=why), estimates, p_values)


def _more_sessions(
    by_bin: dict[str, list[SessionOutcome]],
    leader: str,
    unseparated: list[str],
    estimates: dict[str, float],
    pairs: int,
) -> int | None:
    """Sessions still needed to separate the leader from each close bin (largest shortfall)."""
    shortfall = 0
    for other in unseparated:
        a = [r.value for r in by_bin[leader]]
        b = [r.value for r in by_bin[other]]
        pooled = math.sqrt(
            ((len(a) - 1) * (moments(a).sd or 0) ** 2 + (len(b) - 1) * (moments(b).sd or 0) ** 2)
            / (len(a) + len(b) - 2)
        )
        difference = abs(estimates[leader] - estimates[other])
        if pooled == 0 or difference == 0:
            return None
        per_bin = (
            statsmodels_api()
            .TTestIndPower()
            .solve_power(
                effect_size=difference / pooled,
                alpha=ALPHA / pairs,
                power=POWER,
                ratio=1.0,
                alternative="two-sided",
            )
        )
        needed = float(np.asarray(per_bin).item())
        if not math.isfinite(needed):
            # The solver gives up on very large effects (few, wildly spread sessions): no
            # honest number to give.
            return None
        per_bin = math.ceil(needed)
        shortfall = max(shortfall, max(0, per_bin - len(a)) + max(0, per_bin - len(b)))
    return max(1, shortfall)
