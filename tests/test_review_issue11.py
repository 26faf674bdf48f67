"""Second review of issue 11 (outcomes): each test pins a defect found on main."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx

from services.outcomes.research.study_id import study_id
from tests.auth_support import bearer
from tests.conftest import BACKENDS
from tests.factories import patient
from tests.measures_support import score
from tests.outcomes_support import CODES, deleted, dosed, measures_of, scored
from tests.programme_support import T0, Cohort
from tests.replanning_support import CONSENT_SCOPE
from tests.replicas import replicate

pytestmark = BACKENDS
KEY = "research-key-of-the-review-study-0001"
PHQ9 = "44261-6"


def enrolled(client: httpx.AsyncClient, patient_id: str, practice: str = "a") -> str:
    body = patient(managingOrganization={"reference": f"Organization/{practice}"})
    replicate(client, "Patient", patient_id, body)
    return patient_id


def research_consent(patient_id: str, provision: str) -> dict[str, Any]:
    return {
        "resourceType": "Consent",
        "status": "active",
        "scope": {"coding": [{"system": CONSENT_SCOPE, "code": "research"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "57016-8"}]}],
        "patient": {"reference": f"Patient/{patient_id}"},
        "provision": {"type": provision},
    }


async def export_rows(client: httpx.AsyncClient) -> list[dict[str, str]]:
    response = await client.get("/$research-export", headers={"Accept": "text/csv"})
    assert response.status_code == 200, response.text
    return list(csv.DictReader(io.StringIO(response.text)))


async def test_a_research_consent_that_denies_keeps_the_patient_out_of_the_export(
    service_client: Callable[..., httpx.AsyncClient],
):
    """An active research Consent whose base provision is `deny` is the patient's refusal
    (intake reads `provision.type deny` so for treatment): their scores must not be exported."""
    async with service_client("outcomes", research_key=KEY) as client:
        for patient_id, provision in (("p-permit", "permit"), ("p-deny", "deny")):
            enrolled(client, patient_id)
            replicate(client, "Consent", f"c-{patient_id}", research_consent(patient_id, provision))
            dosed(client, patient_id, f"d-{patient_id}", "2026-03-02T10:00:00Z")
            await scored(client, patient_id, "phq9", 18, "2026-03-01T10:00:00Z")
        exported = {row["study_id"] for row in await export_rows(client)}
        assert study_id(KEY.encode(), "p-permit") in exported
        assert study_id(KEY.encode(), "p-deny") not in exported


async def test_a_score_taken_at_an_instant_is_on_the_patients_outcomes(outcomes):
    """Observation.effective[x] may be an instant (R4): a PHQ-9 stored with effectiveInstant
    is accepted (201), so it must count as the patient's baseline like any other score."""
    p = enrolled(outcomes, "p-instant")
    dosed(outcomes, p, "d-instant", "2026-03-02T10:00:00Z")
    system, code = CODES["phq9"]
    body = score(code, 20, system=system, subject=p)
    del body["effectiveDateTime"]
    body["effectiveInstant"] = "2026-03-01T10:00:00Z"
    response = await outcomes.post("/Observation", json=body)
    assert response.status_code == 201, response.text
    await scored(outcomes, p, "phq9", 8, "2026-03-20T10:00:00Z")
    answer = await outcomes.get(f"/Patient/{p}/$outcomes")
    assert answer.status_code == 200, answer.text
    phq9 = measures_of(answer.json())[PHQ9]
    assert phq9["baseline"] == 20
    assert phq9["response"] is True


async def report(client: httpx.AsyncClient, **headers: str) -> dict[str, Any]:
    response = await client.get("/$programme-report", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def top(body: dict[str, Any], name: str) -> Any:
    (found,) = [p for p in body["parameter"] if p["name"] == name]
    return next(v for k, v in found.items() if k.startswith("value"))


async def test_a_patient_deleted_at_intake_leaves_the_programme_for_every_caller(outcomes):
    """A patient deleted at intake is 410 on `$outcomes`, absent from the research export and
    from a practice's report; the programme-wide report must not still count them."""
    for patient_id in ("p-kept", "p-gone"):
        enrolled(outcomes, patient_id)
        dosed(outcomes, patient_id, f"d-{patient_id}", "2026-03-02T10:00:00Z")
        await scored(outcomes, patient_id, "phq9", 20, "2026-03-01T10:00:00Z")
        await scored(outcomes, patient_id, "phq9", 6, "2026-03-20T10:00:00Z")
    deleted(outcomes, "Patient", "p-gone", version=2)
    practice_a = await report(outcomes, **bearer(practice="Organization/a"))
    programme = await report(outcomes)
    assert top(practice_a, "patients") == 1
    assert top(programme, "patients") == top(practice_a, "patients")


async def test_window_evidence_with_a_wide_but_unseparated_gap_is_not_a_500(outcomes):
    """Two bins of two sessions, SUDS reductions 5, 5 and 0, 1: Welch's test (one patient)
    cannot separate them (df near 1), and the effect size (9) is beyond where statsmodels'
    power solver converges; it returns nan, and `math.ceil(nan)` must not become a 500."""
    c = Cohort()
    c.patient(outcomes, "w-gap", "a")
    reductions = {"10h-a": (10.0, 5), "10h-b": (11.0, 5), "30h-a": (30.0, 0), "30h-b": (31.0, 1)}
    for k, (name, (offset, reduction)) in enumerate(reductions.items()):
        dose_id = f"d-{name}"
        c.dose(outcomes, dose_id, "w-gap", T0 + timedelta(days=10 * k))
        begins, ends = c.emdr(outcomes, name, "w-gap", dose_id, offset, encounter="finished")
        c.score("w-gap", "suds", 8, begins, encounter=f"e-{name}")
        c.score("w-gap", "suds", 8 - reduction, ends, encounter=f"e-{name}")
    await c.post_scores(outcomes)
    response = await outcomes.get("/$window-evidence", params={"outcome": "suds"})
    assert response.status_code == 200, response.text


async def test_a_score_at_the_calendars_edge_does_not_break_the_trajectory_chart(outcomes):
    """The write rule accepts a PHQ-9 effective 0001-01-01 (a mistyped year), and `$outcomes`
    answers; its chart must answer too (a 4xx or a picture), not an OverflowError's 500."""
    p = enrolled(outcomes, "p-edge")
    await scored(outcomes, p, "phq9", 12, "0001-01-01T00:00:00Z")
    await scored(outcomes, p, "phq9", 10, "2026-03-01T10:00:00Z")
    assert (await outcomes.get(f"/Patient/{p}/$outcomes")).status_code == 200
    response = await outcomes.get(f"/Patient/{p}/$outcomes", params={"_format": "svg"})
    assert response.status_code < 500, response.text


async def test_the_export_order_does_not_reveal_the_order_of_patient_ids(
    service_client: Callable[..., httpx.AsyncClient],
):
    """Rows come grouped by patient in patient-id order, so with sequential ids (an MRN, a
    creation counter) a reader ranks the study ids back to the patients: order them by the
    study id instead."""
    async with service_client("outcomes", research_key=KEY) as client:
        patients = [f"patient-{n:03d}" for n in range(8)]
        for patient_id in patients:
            enrolled(client, patient_id)
            replicate(client, "Consent", f"c-{patient_id}", research_consent(patient_id, "permit"))
            await scored(client, patient_id, "phq9", 18, "2026-03-01T10:00:00Z")
        in_file = [row["study_id"] for row in await export_rows(client)]
        by_patient_id = [study_id(KEY.encode(), p) for p in patients]
        assert sorted(in_file) == sorted(by_patient_id)
        assert in_file != by_patient_id
        assert in_file == sorted(in_file)
