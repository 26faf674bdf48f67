"""Issue 11: `$window-evidence`, outcomes of EMDR sessions by offset bin after their dose,
checked against statsmodels and pingouin on the same generated sessions."""

from __future__ import annotations

import math
from datetime import timedelta

import httpx
import numpy as np
import pandas as pd
import pingouin as pg
import pytest
import statsmodels.formula.api as smf
from pydantic import ValidationError
from statsmodels.stats.weightstats import DescrStatsW

from services.outcomes.settings import OutcomesSettings
from tests.auth_support import principal, token_for
from tests.conftest import BACKENDS
from tests.fhir_asserts import assert_outcome
from tests.programme_support import T0, Cohort, part

pytestmark = [
    BACKENDS,
    # The formula fits below may retry their optimiser; they are the yardstick, not the subject.
    pytest.mark.filterwarnings("ignore::statsmodels.tools.sm_exceptions.ConvergenceWarning"),
]
EVIDENCE = "/$window-evidence"
BINS = ["0-2 h", "2-24 h", "24-72 h", "72 h-7 d", "over 7 d"]
OFFSETS = {"0-2 h": (0.2, 1.9), "2-24 h": (2, 23), "24-72 h": (24, 71), "72 h-7 d": (72, 167)}
OFFSETS["over 7 d"] = (168, 230)


def _clip(value: float, high: int) -> int:
    return int(min(max(round(value), 0), high))


async def load(
    outcomes: httpx.AsyncClient,
    *,
    seed: int,
    patients: int,
    pcl5_effect: dict[str, float],
    noise: float,
) -> pd.DataFrame:
    """Each patient: five doses 12 days apart, one EMDR session after each in a different
    bin, SUDS at its start (and middle) and end, PCL-5 before the dose and after the session.
    Returns one row per session that took place, as the test computes it."""
    rng = np.random.default_rng(seed)
    c = Cohort()
    rows = []
    for i in range(patients):
        pid = f"w{i:02d}"
        c.patient(outcomes, pid, "a" if i % 2 == 0 else "b")
        own = rng.normal(0, 2)  # the patient's own level, what the random intercept absorbs
        for k, label in enumerate(rng.permutation(BINS)):
            start = T0 + timedelta(days=12 * k, hours=i)
            dose_id, appointment = f"d{i}-{k}", f"s{i}-{k}"
            c.dose(outcomes, dose_id, pid, start)
            offset = float(round(rng.uniform(*OFFSETS[label]), 1))
            status, encounter = ("booked", "finished") if k == 2 else ("fulfilled", "finished")
            if i == 0 and k == 4:  # a session that did not take place is not counted
                status, encounter = "cancelled", None
            begins, ends = c.emdr(
                outcomes, appointment, pid, dose_id, offset, status=status, encounter=encounter
            )
            suds_start = _clip(rng.normal(8, 1), 10)
            suds_end = _clip(suds_start - rng.normal(4, 2), 10)
            c.score(pid, "suds", suds_start, begins, encounter=f"e-{appointment}")
            if k == 1:  # a SUDS in between changes neither the first nor the last
                middle = begins + timedelta(minutes=20)
                c.score(pid, "suds", 5, middle, encounter=f"e-{appointment}")
            c.score(pid, "suds", suds_end, ends, encounter=f"e-{appointment}")
            pre = _clip(rng.normal(50, 8), 80)
            post = _clip(pre + pcl5_effect[label] + own + rng.normal(0, noise), 80)
            c.score(pid, "pcl5-total", pre, start - timedelta(hours=1))
            c.score(pid, "pcl5-total", post, ends + timedelta(hours=2))
            if encounter is not None:
                rows.append(
                    {
                        "patient": pid,
                        "bin": label,
                        "suds": float(suds_start - suds_end),
                        "pcl5": float(post - pre),
                        "practice": c.practices[pid],
                    }
                )
    await c.post_scores(outcomes)
    return pd.DataFrame(rows)


async def evidence(client: httpx.AsyncClient, who=None, **params) -> dict:
    headers = {"Authorization": f"Bearer {token_for(who)}"} if who is not None else {}
    response = await client.get(EVIDENCE, params=params, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def bins_of(body: dict) -> dict[str, dict]:
    return {part(p, "label"): p for p in body["parameter"] if p["name"] == "bin"}


def comparison(body: dict) -> dict:
    (found,) = [p for p in body["parameter"] if p["name"] == "comparison"]
    return found


def check_bins(body: dict, frame: pd.DataFrame) -> None:
    """Per bin: sessions, and each mean with its t interval against statsmodels."""
    found = bins_of(body)
    assert list(found) == BINS
    for label in BINS:
        members = frame[frame["bin"] == label]
        assert part(found[label], "sessions") == len(members)
        for column, name in (("suds", "sudsReduction"), ("pcl5", "pcl5Change")):
            values = members[column].to_numpy()
            assert part(found[label], f"{column}N") == len(values)
            low, high = DescrStatsW(values).tconfint_mean(alpha=0.05)
            assert part(found[label], name) == pytest.approx(values.mean(), abs=1e-4)
            assert part(found[label], f"{name}Low") == pytest.approx(low, abs=1e-4)
            assert part(found[label], f"{name}High") == pytest.approx(high, abs=1e-4)


async def test_a_clearly_better_bin_is_named_as_a_mixed_model_shows(outcomes):
    effects = {"0-2 h": -2, "2-24 h": -4, "24-72 h": -15, "72 h-7 d": -5, "over 7 d": -1}
    frame = await load(outcomes, seed=3, patients=10, pcl5_effect=effects, noise=3)
    body = await evidence(outcomes)
    check_bins(body, frame)
    found = bins_of(body)
    assert part(found["0-2 h"], "fromHours") == 0 and part(found["0-2 h"], "toHours") == 2
    assert part(found["over 7 d"], "fromHours") == 168
    assert part(found["over 7 d"], "toHours") is None
    verdict = comparison(body)
    assert part(verdict, "best") == "24-72 h"
    assert part(verdict, "method").startswith("linear mixed model")
    assert part(verdict, "moreSessionsNeeded") is None
    assert "changes no protocol" in part(verdict, "conclusion")
    # Independently: the same model by formula, 24-72 h as reference; even Bonferroni over
    # its four contrasts separates it, so Holm over all pairs does too.
    fit = smf.mixedlm("pcl5 ~ C(bin, Treatment('24-72 h'))", frame, groups=frame["patient"]).fit(
        reml=True
    )
    contrasts = {k: v for k, v in fit.pvalues.items() if k.startswith("C(bin")}
    assert len(contrasts) == 4 and max(contrasts.values()) * 4 < 0.05
    assert all(fit.fe_params[k] > 0 for k in contrasts)  # every other bin changes less


async def test_when_bins_do_not_differ_it_cannot_tell_and_says_how_many_more(outcomes):
    effects = dict.fromkeys(BINS, -5.0)
    frame = await load(outcomes, seed=4, patients=4, pcl5_effect=effects, noise=6)
    body = await evidence(outcomes)
    check_bins(body, frame)
    verdict = comparison(body)
    assert part(verdict, "best") is None
    assert "cannot tell yet" in part(verdict, "conclusion")
    more = part(verdict, "moreSessionsNeeded")
    # Independently: the leader by the formula model, its gap to each bin, the pooled sd, and
    # pingouin's sessions per bin for 80 % power at 0.05 over the ten pairs.
    fit = smf.mixedlm("pcl5 ~ C(bin)", frame, groups=frame["patient"]).fit(reml=True)
    means = {b: fit.fe_params["Intercept"] for b in BINS}
    for b in BINS[1:]:
        means[b] += fit.fe_params[f"C(bin)[T.{b}]"]
    leader = min(BINS, key=means.__getitem__)
    refit = smf.mixedlm(
        f"pcl5 ~ C(bin, Treatment('{leader}'))", frame, groups=frame["patient"]
    ).fit(reml=True)
    assert min(p for k, p in refit.pvalues.items() if k.startswith("C(bin")) > 0.05
    shortfalls = []
    for other in BINS:
        if other == leader:
            continue
        a = frame[frame["bin"] == leader]["pcl5"].to_numpy()
        b = frame[frame["bin"] == other]["pcl5"].to_numpy()
        pooled = math.sqrt(
            ((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1)) / (len(a) + len(b) - 2)
        )
        d = abs(means[leader] - means[other]) / pooled
        per_bin = math.ceil(pg.power_ttest(d=d, power=0.8, alpha=0.05 / 10))
        shortfalls.append(max(0, per_bin - len(a)) + max(0, per_bin - len(b)))
    assert more == max(1, max(shortfalls))


async def test_suds_is_compared_on_request_and_practices_see_their_own(outcomes):
    effects = dict.fromkeys(BINS, -5.0)
    frame = await load(outcomes, seed=5, patients=6, pcl5_effect=effects, noise=4)
    body = await evidence(outcomes, outcome="suds")
    assert part(comparison(body), "outcome") == "within-session SUDS reduction"
    a = principal(practice="Organization/a")
    mine = await evidence(outcomes, a)
    check_bins(mine, frame[frame["practice"] == "a"])
    narrowed = await evidence(outcomes, practice="Organization/b")
    check_bins(narrowed, frame[frame["practice"] == "b"])
    nothing = await evidence(outcomes, a, practice="Organization/b")
    assert all(part(b, "sessions") == 0 for b in bins_of(nothing).values())
    assert "cannot tell yet" in part(comparison(nothing), "conclusion")


async def test_the_bins_are_a_setting(service_client):
    async with service_client("outcomes", window_bins_h="24") as outcomes:
        effects = dict.fromkeys(BINS, -5.0)
        frame = await load(outcomes, seed=6, patients=3, pcl5_effect=effects, noise=4)
        found = bins_of(await evidence(outcomes))
    assert list(found) == ["0-24 h", "over 24 h"]
    early = frame["bin"].isin(["0-2 h", "2-24 h"])
    assert part(found["0-24 h"], "sessions") == int(early.sum())
    assert part(found["over 24 h"], "sessions") == int((~early).sum())
    assert part(found["over 24 h"], "fromHours") == 24
    for wrong in ("24,2", "0,24", "two"):
        with pytest.raises(ValidationError):
            OutcomesSettings(window_bins_h=wrong)


async def test_an_unknown_outcome_is_refused_naming_it(outcomes):
    response = await outcomes.get(EVIDENCE, params={"outcome": "mood"})
    assert_outcome(response, 400, "invalid")
    assert response.json()["issue"][0]["expression"] == ["outcome"]
