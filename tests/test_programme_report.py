"""Issue 11: `$programme-report`, checked against an independent computation (pingouin,
statsmodels, scipy) on the same generated cohort, its filters and practice isolation."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import httpx
import numpy as np
import pingouin as pg
import pytest
from scipy import stats
from statsmodels.stats.proportion import proportion_confint

from tests.auth_support import principal, token_for
from tests.conftest import BACKENDS
from tests.fhir_asserts import assert_outcome
from tests.programme_support import T0, Cohort, by_instrument, part, parts, top

pytestmark = BACKENDS
REPORT = "/$programme-report"
IM = "78421000"
# Response and remission as the handbook defines them, computed here independently.
HALVING = {"phq9-total", "madrs-total"}
POINTS = {"pcl5-total": 10}
REMISSION = {"phq9-total": 5, "madrs-total": 7}
CODE = {"phq9-total": "44261-6", "pcl5-total": "101698-9", "madrs-total": "madrs-total"}


def _clip(value: float, high: int) -> int:
    return int(min(max(round(value), 0), high))


async def load(outcomes: httpx.AsyncClient, seed: int = 7, patients: int = 14) -> Cohort:
    """Patients of practices a and b, IV or IM, each with two doses, scores before, between
    and after, and EMDR sessions in and out of the optimal window, some that did not happen."""
    rng = np.random.default_rng(seed)
    c = Cohort()
    for i in range(patients):
        pid = f"p{i:02d}"
        c.patient(outcomes, pid, "a" if i % 2 == 0 else "b")
        im = i % 4 == 3
        route, protocol = ("im", "im-racemic") if im else ("iv", "iv-racemic")
        first = T0 + timedelta(days=3 * i)
        c.dose(outcomes, f"d{i}-1", pid, first, route=route, protocol=protocol)
        c.dose(outcomes, f"d{i}-2", pid, first + timedelta(days=4), route=route, protocol=protocol)
        base = int(rng.integers(12, 25))
        c.score(pid, "phq9-total", int(rng.integers(10, 27)), first - timedelta(days=30))
        latest = _clip(base + rng.normal(-9, 6), 27)
        if i == 0:  # exactly half: a response (at least 50 %)
            base, latest = 20, 10
        c.score(pid, "phq9-total", base, first - timedelta(days=1))
        c.score(pid, "phq9-total", _clip(base - rng.integers(0, 8), 27), first + timedelta(days=7))
        c.score(pid, "phq9-total", latest, first + timedelta(days=28))
        pcl5 = int(rng.integers(30, 70))
        # The baseline may be taken at the very start of the first dose.
        c.score(pid, "pcl5-total", pcl5, first if i == 6 else first - timedelta(days=2))
        if i != 5:  # p05 has no PCL-5 after the dose: not counted for PCL-5
            later = pcl5 - 10 if i == 1 else _clip(pcl5 + rng.normal(-12, 9), 80)  # 10: meaningful
            c.score(pid, "pcl5-total", later, first + timedelta(28))
        if i < 2:  # two patients with MADRS: too few for Hedges' g
            c.score(pid, "madrs-total", 30 + i, first - timedelta(days=1))
            c.score(pid, "madrs-total", 12 - 6 * i, first + timedelta(days=20))
        c.emdr(outcomes, f"s{i}-1", pid, f"d{i}-1", 30)  # fulfilled, inside
        # Booked, its visit finished: it took place, outside the optimal window.
        c.emdr(outcomes, f"s{i}-2", pid, f"d{i}-2", 100, status="booked", encounter="finished")
        c.emdr(outcomes, f"s{i}-3", pid, f"d{i}-2", 40, status="cancelled")
        if i % 3 == 0:  # in progress: not (yet) taken place
            c.emdr(
                outcomes, f"s{i}-4", pid, f"d{i}-2", 50, status="arrived", encounter="in-progress"
            )
    # A patient with scores but no dose is not counted.
    c.patient(outcomes, "nodose", "a")
    c.score("nodose", "phq9-total", 20, T0)
    c.score("nodose", "phq9-total", 3, T0 + timedelta(days=30))
    await c.post_scores(outcomes)
    return c


def _first_doses(c: Cohort) -> dict[str, tuple[datetime, str, str]]:
    first: dict[str, tuple[datetime, str, str]] = {}
    for patient, start, route, protocol in c.doses.values():
        if patient not in first or start < first[patient][0]:
            first[patient] = (start, route, protocol)
    return first


def expected(c: Cohort, keep: set[str]) -> dict[str, list[tuple[float, float]]]:
    """(baseline, latest) per counted patient and instrument, straight from the definition."""
    first = _first_doses(c)
    pairs: dict[str, list[tuple[float, float]]] = {}
    for (patient, measure), values in sorted(c.scores.items()):
        if patient not in keep or patient not in first:
            continue
        before = [v for v in values if v[0] <= first[patient][0]]
        after = [v for v in values if v[0] > first[patient][0]]
        if before and after:
            pairs.setdefault(measure, []).append((max(before)[1], max(after)[1]))
    return pairs


async def report(client: httpx.AsyncClient, who=None, **params) -> dict:
    headers = {"Authorization": f"Bearer {token_for(who)}"} if who is not None else {}
    response = await client.get(REPORT, params=params, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["resourceType"] == "Parameters"
    return response.json()


def check_measure(found: dict, pairs: list[tuple[float, float]], measure: str) -> None:
    """Every statistic of one instrument against scipy, pingouin and statsmodels."""
    baseline = np.array([b for b, _ in pairs])
    latest = np.array([la for _, la in pairs])
    changes = latest - baseline
    n = len(pairs)
    close = pytest.approx
    assert part(found, "n") == n
    assert part(found, "baselineMean") == close(baseline.mean(), abs=1e-4)
    assert part(found, "latestMean") == close(latest.mean(), abs=1e-4)
    assert part(found, "meanChange") == close(changes.mean(), abs=1e-4)
    if n >= 3:
        g = pg.compute_effsize(changes, 0, eftype="hedges")
        assert part(found, "hedgesG") == close(g, abs=1e-4)
        # The interval's ends are the noncentralities leaving 2.5 % of t beyond t observed.
        j = 1 - 3 / (4 * (n - 1) - 1)
        t = changes.mean() / changes.std(ddof=1) * math.sqrt(n)
        for name, tail in (("hedgesGLow", 0.975), ("hedgesGHigh", 0.025)):
            ncp = part(found, name) / j * math.sqrt(n)
            assert stats.nct.cdf(t, n - 1, ncp) == close(tail, abs=2e-3)
    if measure in HALVING or measure in POINTS:
        responders = int(
            sum(
                (b > 0 and la - b <= -0.5 * b)
                if measure in HALVING
                else (la - b <= -POINTS[measure])
                for b, la in pairs
            )
        )
        low, high = proportion_confint(responders, n, method="wilson")
        assert part(found, "responseRate") == close(responders / n, abs=1e-4)
        assert part(found, "responseRateLow") == close(low, abs=1e-4)
        assert part(found, "responseRateHigh") == close(high, abs=1e-4)
    else:
        assert part(found, "responseRate") is None
    if measure in REMISSION:
        remitters = sum(la < REMISSION[measure] for _, la in pairs)
        assert part(found, "remissionRate") == close(remitters / n, abs=1e-4)
    else:
        assert part(found, "remissionRate") is None


async def test_the_report_matches_an_independent_computation(outcomes):
    c = await load(outcomes)
    found = by_instrument(await report(outcomes))
    pairs = expected(c, set(c.practices))
    assert set(pairs) == {
        "phq9-total",
        "pcl5-total",
        "madrs-total",
    }
    assert len(pairs["pcl5-total"]) == 13  # p05 has no later PCL-5; p06's baseline is at the dose
    for measure, measure_pairs in pairs.items():
        check_measure(found[CODE[measure]], measure_pairs, measure)
    phq9 = found["44261-6"]
    assert part(phq9, "instrument") == {
        "system": "http://loinc.org",
        "code": "44261-6",
        "display": "PHQ-9 total score",
    }
    local = part(found["madrs-total"], "instrument")["system"]
    assert local.endswith("/CodeSystem/outcome-measure")


async def test_window_adherence_counts_sessions_that_took_place(outcomes):
    c = await load(outcomes)
    body = await report(outcomes)
    happened = [s for s in c.sessions.values() if s[2]]
    inside = sum(1 for s in happened if s[3])
    assert top(body, "sessions") == len(happened) == 28
    assert top(body, "windowAdherence") == pytest.approx(inside / len(happened), abs=1e-4)
    low, high = proportion_confint(inside, len(happened), method="wilson")
    assert top(body, "windowAdherenceLow") == pytest.approx(low, abs=1e-4)
    assert top(body, "windowAdherenceHigh") == pytest.approx(high, abs=1e-4)
    assert top(body, "patients") == 14


async def test_below_three_patients_there_is_no_g_and_a_note_says_why(outcomes):
    await load(outcomes)
    madrs = by_instrument(await report(outcomes))["madrs-total"]
    assert part(madrs, "n") == 2
    assert part(madrs, "hedgesG") is None and part(madrs, "hedgesGLow") is None
    assert any("at least 3" in note for note in parts(madrs, "note"))
    # Rates need no minimum: a Wilson interval stands for any n.
    assert part(madrs, "responseRate") == 1.0 and part(madrs, "remissionRate") == 0.5


async def test_equal_changes_give_no_g_and_a_note(outcomes):
    c = Cohort()
    for i in range(4):
        c.patient(outcomes, f"q{i}", "a")
        c.dose(outcomes, f"dq{i}", f"q{i}", T0)
        c.score(f"q{i}", "phq9-total", 20 + i, T0 - timedelta(days=1))
        c.score(f"q{i}", "phq9-total", 10 + i, T0 + timedelta(days=9))
    await c.post_scores(outcomes)
    phq9 = by_instrument(await report(outcomes))["44261-6"]
    assert part(phq9, "meanChange") == -10 and part(phq9, "hedgesG") is None
    assert any("sd = 0" in note for note in parts(phq9, "note"))
    assert top(await report(outcomes), "windowAdherence") is None  # no session took place


def _counted(c: Cohort, test) -> set[str]:
    return {p for p, (start, route, protocol) in _first_doses(c).items() if test(p, start, route)}


FILTERS = [
    ({"route": IM}, lambda p, start, route: route == "im"),
    ({"protocol": "iv-racemic"}, lambda p, start, route: route == "iv"),
    (
        {"period": ["ge2026-01-11", "lt2026-01-26"]},
        lambda p, start, route: datetime(2026, 1, 11) <= start < datetime(2026, 1, 26),
    ),
    ({"period": "2026-01-14"}, lambda p, start, route: start.date().isoformat() == "2026-01-14"),
    ({"period": "gt2026-02-08"}, lambda p, start, route: start.date().isoformat() > "2026-02-08"),
    ({"practice": "Organization/a"}, lambda p, start, route: int(p[1:]) % 2 == 0),
    ({"practice": "b", "route": IM}, lambda p, start, route: route == "im" and int(p[1:]) % 2),
]


async def test_filters_narrow_the_patients_counted(outcomes):
    c = await load(outcomes)
    for params, test in FILTERS:
        keep = _counted(c, test)
        assert 0 < len(keep) < 14, params
        body = await report(outcomes, **params)
        assert top(body, "patients") == len(keep), params
        pairs = expected(c, keep)
        found = by_instrument(body)
        for measure in ("phq9-total", "pcl5-total"):
            check_measure(found[CODE[measure]], pairs[measure], measure)
        happened = [s for s in c.sessions.values() if s[2] and s[0] in keep]
        assert top(body, "sessions") == len(happened), params


async def test_a_practice_sees_only_its_own_patients(outcomes):
    c = await load(outcomes)
    a = principal(practice="Organization/a")
    mine = {p for p, practice in c.practices.items() if practice == "a" and p != "nodose"}
    body = await report(outcomes, a)
    assert top(body, "patients") == len(mine)
    check_measure(by_instrument(body)["44261-6"], expected(c, mine)["phq9-total"], "phq9-total")
    # Asking for another practice's patients narrows to nothing, it does not widen.
    other = await report(outcomes, a, practice="Organization/b")
    assert top(other, "patients") == 0 and by_instrument(other) == {}
    assert top(other, "sessions") == 0
    nobody = await report(outcomes, principal(practice=None))
    assert top(nobody, "patients") == 0


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"period": "soon"}, "period"),
        ({"period": ""}, "period"),
        ({"period": "ge"}, "period"),
        ({"period": "ge2026-13-01"}, "period"),
        ({"practice": "Organization/a b"}, "practice"),
        ({"colour": "red"}, "colour"),
    ],
)
async def test_bad_filters_are_refused_naming_the_parameter(outcomes, params, name):
    response = await outcomes.get(REPORT, params=params)
    assert_outcome(response, 400, "invalid")
    assert response.json()["issue"][0]["expression"] == [name]


async def test_the_report_and_the_evidence_draw_as_charts(outcomes):
    await load(outcomes)
    for url in (REPORT, "/$window-evidence"):
        response = await outcomes.get(url, params={"_format": "svg"})
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("image/svg+xml")
        assert b"<svg" in response.content
