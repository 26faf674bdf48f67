"""The outcome statistics against independent computations (pingouin, statsmodels, scipy)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pingouin as pg
import pytest
import statsmodels.formula.api as smf
from scipy import stats
from statsmodels.stats.proportion import proportion_confint
from statsmodels.stats.weightstats import DescrStatsW

from services.outcomes.statistics.effect_size import paired_hedges_g, small_sample_factor
from services.outcomes.statistics.estimates import Estimate, Unavailable
from services.outcomes.statistics.means import mean_interval, moments, moments_from_sums
from services.outcomes.statistics.proportions import wilson_interval
from services.outcomes.statistics.window_model import SessionOutcome, compare_bins

BINS = ["0-2 h", "2-24 h", "24-72 h", "72 h-7 d", "over 7 d"]


def _changes(seed: int, n: int) -> np.ndarray:
    """Integer score changes, as PHQ-9 or PCL-5 changes are."""
    rng = np.random.default_rng(seed)
    return np.round(rng.normal(-6, 5, n))


def _from_sums(values: np.ndarray) -> tuple[int, float, float]:
    """What SQL gives: n, the sum and the sum of squares."""
    return len(values), float(values.sum()), float((values**2).sum())


@pytest.mark.parametrize(("seed", "n"), [(1, 3), (2, 5), (3, 12), (4, 40), (5, 200)])
def test_hedges_g_from_sums_matches_pingouin(seed: int, n: int) -> None:
    changes = _changes(seed, n)
    m = moments_from_sums(*_from_sums(changes))
    assert m.sd is not None and m.mean is not None
    assert m.sd == pytest.approx(np.std(changes, ddof=1), rel=1e-9)
    g = paired_hedges_g(m.n, m.mean, m.sd)
    assert isinstance(g, Estimate)
    # pingouin: a one-sample d against 0 converted to Hedges' g uses J = 1 - 3/(4(n-1)-1).
    assert g.value == pytest.approx(pg.compute_effsize(changes, 0, eftype="hedges"), rel=1e-9)
    assert g.low < g.value < g.high


@pytest.mark.parametrize(("seed", "n"), [(6, 3), (7, 6), (8, 25)])
def test_hedges_g_interval_is_the_exact_noncentral_t_interval(seed: int, n: int) -> None:
    changes = _changes(seed, n)
    mean, sd = float(changes.mean()), float(changes.std(ddof=1))
    g = paired_hedges_g(n, mean, sd)
    assert isinstance(g, Estimate)
    t, j = mean / sd * math.sqrt(n), small_sample_factor(n)
    # Undo J and sqrt(n): each end is a noncentrality leaving 2.5 % of the t beyond t_obs.
    assert stats.nct.cdf(t, n - 1, g.low / j * math.sqrt(n)) == pytest.approx(0.975, abs=1e-6)
    assert stats.nct.cdf(t, n - 1, g.high / j * math.sqrt(n)) == pytest.approx(0.025, abs=1e-6)


def test_hedges_g_interval_approaches_the_normal_approximation_for_large_n() -> None:
    changes = _changes(9, 600)
    n, mean, sd = len(changes), float(changes.mean()), float(changes.std(ddof=1))
    g = paired_hedges_g(n, mean, sd)
    assert isinstance(g, Estimate)
    low, high = pg.compute_esci(stat=mean / sd, nx=n, ny=n, paired=True, decimals=12)
    j = small_sample_factor(n)
    assert (g.low, g.high) == pytest.approx((low * j, high * j), abs=0.005)


def test_hedges_g_needs_three_patients_and_some_spread() -> None:
    two = paired_hedges_g(2, -5.0, 3.0)
    assert isinstance(two, Unavailable) and "at least 3" in two.reason
    flat = paired_hedges_g(6, -5.0, 0.0)
    assert isinstance(flat, Unavailable) and "sd = 0" in flat.reason
    # Equal changes through the sum-of-squares route give an sd of exactly 0, not residue.
    equal = np.full(7, -3.3)
    assert moments_from_sums(*_from_sums(equal)).sd == 0.0


@pytest.mark.parametrize(("successes", "n"), [(0, 10), (10, 10), (1, 1), (7, 23), (45, 100)])
def test_wilson_interval_matches_statsmodels(successes: int, n: int) -> None:
    rate = wilson_interval(successes, n)
    assert isinstance(rate, Estimate)
    low, high = proportion_confint(successes, n, alpha=0.05, method="wilson")
    assert rate.value == successes / n
    assert (rate.low, rate.high) == pytest.approx((low, high), abs=1e-12)
    assert 0.0 <= rate.low <= rate.value <= rate.high <= 1.0


def test_wilson_interval_at_the_bounds_and_without_patients() -> None:
    none = wilson_interval(0, 10)
    all_ = wilson_interval(10, 10)
    assert isinstance(none, Estimate) and none.low == 0.0 and none.high > 0.0
    assert isinstance(all_, Estimate) and all_.high == 1.0 and all_.low < 1.0
    assert isinstance(wilson_interval(0, 0), Unavailable)


@pytest.mark.parametrize(("seed", "n"), [(10, 2), (11, 9), (12, 80)])
def test_mean_interval_matches_statsmodels(seed: int, n: int) -> None:
    values = np.random.default_rng(seed).normal(3.2, 1.7, n)
    for m in (moments(list(values)), moments_from_sums(*_from_sums(values))):
        mean = mean_interval(m)
        assert isinstance(mean, Estimate)
        low, high = DescrStatsW(values).tconfint_mean(alpha=0.05)
        assert (mean.value, mean.low, mean.high) == pytest.approx(
            (values.mean(), low, high), rel=1e-9
        )


def test_mean_interval_needs_two_values() -> None:
    assert isinstance(mean_interval(moments([4.0])), Unavailable)
    assert isinstance(mean_interval(moments([])), Unavailable)
    same = mean_interval(moments([2.0, 2.0, 2.0]))
    assert same == Estimate(2.0, 2.0, 2.0)


def _sessions(seed: int, effects: dict[str, float], patients: int, each: int) -> list:
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(patients):
        own = rng.normal(0, 3)  # a patient's own level: what the random intercept absorbs
        for _ in range(each):
            b = BINS[int(rng.integers(len(BINS)))]
            rows.append(SessionOutcome(f"p{p}", b, effects[b] + own + rng.normal(0, 4)))
    return rows


def test_a_clearly_better_bin_is_named_and_the_model_agrees_with_statsmodels_formula() -> None:
    effects = {"0-2 h": -2, "2-24 h": -4, "24-72 h": -12, "72 h-7 d": -4, "over 7 d": -1}
    rows = _sessions(20, effects, patients=40, each=5)
    result = compare_bins(rows, BINS, outcome="PCL-5 change", higher_is_better=False)
    assert result.best == "24-72 h"
    assert result.method.startswith("linear mixed model")
    assert result.more_sessions_needed is None
    # Independently: the same model through the formula interface, reference bin 24-72 h.
    frame = pd.DataFrame([r.__dict__ for r in rows])
    fit = smf.mixedlm(
        "value ~ C(bin, Treatment('24-72 h'))", frame, groups=frame["patient_id"]
    ).fit(reml=True)
    p_values = [p for name, p in fit.pvalues.items() if name.startswith("C(bin")]
    assert len(p_values) == 4
    assert max(p_values) * 4 < 0.05  # even Bonferroni separates it from every other bin
    assert fit.fe_params["Intercept"] < min(
        fit.fe_params["Intercept"] + v for k, v in fit.fe_params.items() if k.startswith("C(")
    )


def test_no_difference_cannot_tell_and_estimates_more_sessions_with_a_power_calculation() -> None:
    effects = dict.fromkeys(BINS, -5.0)
    effects["24-72 h"] = -7.0
    rows = _sessions(21, effects, patients=12, each=3)
    result = compare_bins(rows, BINS, outcome="PCL-5 change", higher_is_better=False)
    assert result.best is None
    assert "cannot tell yet" in result.conclusion
    assert result.more_sessions_needed is not None and result.more_sessions_needed >= 1


def test_more_sessions_follows_pingouin_power_for_two_bins() -> None:
    rng = np.random.default_rng(23)
    a, b = rng.normal(-6, 4, 6), rng.normal(-5, 4, 6)
    # One session per patient: Welch's means are the estimates, one pair: alpha 0.05.
    rows = [SessionOutcome(f"a{i}", "2-24 h", v) for i, v in enumerate(a)]
    rows += [SessionOutcome(f"b{i}", "24-72 h", v) for i, v in enumerate(b)]
    result = compare_bins(rows, BINS, outcome="x", higher_is_better=False)
    assert result.best is None and "Welch" in result.method
    pooled = math.sqrt((np.var(a, ddof=1) + np.var(b, ddof=1)) / 2)
    per_bin = pg.power_ttest(d=abs(a.mean() - b.mean()) / pooled, power=0.8, alpha=0.05)
    assert result.more_sessions_needed == 2 * (math.ceil(per_bin) - 6)


def test_too_few_patients_falls_back_to_welch_and_says_so() -> None:
    rows = [
        SessionOutcome("a", "0-2 h", 1.0),
        SessionOutcome("b", "0-2 h", 2.0),
        SessionOutcome("a", "2-24 h", 2.5),
        SessionOutcome("b", "2-24 h", 1.0),
        SessionOutcome("a", "24-72 h", 5.0),
        SessionOutcome("b", "24-72 h", 6.5),
        SessionOutcome("a", "24-72 h", 5.5),
    ]
    result = compare_bins(rows, BINS, outcome="SUDS reduction", higher_is_better=True)
    assert "Welch" in result.method and "fewer than 3 patients" in result.method
    frame = pd.DataFrame([r.__dict__ for r in rows])
    welch = pg.pairwise_tests(
        data=frame, dv="value", between="bin", padjust="holm", correction=True
    )
    best = welch[(welch["A"] == "24-72 h") | (welch["B"] == "24-72 h")]
    separated = bool((best["p_corr"] < 0.05).all())
    assert (result.best == "24-72 h") is separated


def test_a_single_bin_with_sessions_cannot_be_compared() -> None:
    rows = [SessionOutcome("a", "2-24 h", 3.0), SessionOutcome("b", "2-24 h", 4.0)]
    result = compare_bins(rows, BINS, outcome="SUDS reduction", higher_is_better=True)
    assert result.best is None and result.more_sessions_needed is None
    assert "cannot tell yet" in result.conclusion
