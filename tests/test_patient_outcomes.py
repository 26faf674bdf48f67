"""Issue 11: `Patient/{id}/$outcomes` (baseline, latest, change, band, response, remission and
the timeline) and the patient's outcomes as a Bundle (`$everything`), through HTTP."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import httpx

from tests.auth_support import bearer
from tests.conftest import BACKENDS
from tests.factories import patient
from tests.fhir_asserts import assert_outcome
from tests.measures_support import LOCAL
from tests.outcomes_support import deleted, dosed, emdr, events_of, measures_of, scored
from tests.replicas import replicate

pytestmark = BACKENDS
SVG_TEXT = "{http://www.w3.org/2000/svg}text"
PRACTICE_A = {"managingOrganization": {"reference": "Organization/a"}}
DOSE_1, DOSE_2 = "2026-03-02T10:00:00Z", "2026-03-09T10:00:00Z"
WINDOW = {
    "windowStart": "2026-03-02T12:00:00Z",
    "optimalStart": "2026-03-03T10:00:00Z",
    "optimalEnd": "2026-03-05T10:00:00Z",
    "windowEnd": "2026-03-09T10:00:00Z",
}


def enrolled(client: httpx.AsyncClient, patient_id: str) -> str:
    """A patient of practice a in outcomes' replica."""
    replicate(client, "Patient", patient_id, patient(**PRACTICE_A))
    return patient_id


async def outcomes_of(client: httpx.AsyncClient, patient_id: str, **headers: str) -> dict:
    response = await client.get(f"/Patient/{patient_id}/$outcomes", headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["resourceType"] == "Parameters"
    return response.json()


async def test_a_course_summarised_from_baseline_before_the_first_dose(outcomes):
    p = enrolled(outcomes, "p1")
    await scored(outcomes, p, "phq9", 20, "2026-02-20T09:00:00Z")
    await scored(outcomes, p, "phq9", 18, "2026-03-02T10:00:00Z")  # at the dose: still before
    await scored(outcomes, p, "phq9", 12, "2026-03-05T09:00:00Z")
    await scored(outcomes, p, "phq9", 9, "2026-03-20T09:00:00Z")
    await scored(outcomes, p, "pcl5", 50, "2026-02-21T09:00:00Z")
    await scored(outcomes, p, "pcl5", 40, "2026-03-20T09:00:00Z")
    dosed(outcomes, p, "d2", DOSE_2)
    dosed(outcomes, p, "d1", DOSE_1, window=WINDOW)
    summary = await outcomes_of(outcomes, p)
    assert summary["parameter"][0] == {
        "name": "patient",
        "valueReference": {"reference": "Patient/p1"},
    }
    found = measures_of(summary)
    assert list(found) == ["44261-6", "101698-9"]  # the measures file's order
    assert found["44261-6"] == {
        "instrument": {
            "system": "http://loinc.org",
            "code": "44261-6",
            "display": "PHQ-9 total score",
        },
        "baseline": 18,
        "baselineTime": "2026-03-02T10:00:00Z",
        "latest": 9,
        "latestTime": "2026-03-20T09:00:00Z",
        "change": -9,
        "percentChange": -50.0,
        "severityBand": "mild",
        "response": True,  # exactly 50 %
        "remission": False,
    }
    # PCL-5: no bands, no response or remission; a 10-point drop is clinically meaningful.
    assert found["101698-9"] == {
        "instrument": {
            "system": "http://loinc.org",
            "code": "101698-9",
            "display": "PCL-5 total score",
        },
        "baseline": 50,
        "baselineTime": "2026-02-21T09:00:00Z",
        "latest": 40,
        "latestTime": "2026-03-20T09:00:00Z",
        "change": -10,
        "percentChange": -20.0,
        "clinicallyMeaningfulChange": True,
    }
    # Plain JSON numbers: no float noise, the percentage to one decimal.
    response = await outcomes.get(f"/Patient/{p}/$outcomes")
    assert b'"percentChange","valueDecimal":-50.0}' in response.content
    assert b'"baseline","valueDecimal":18}' in response.content


async def test_the_rules_at_their_boundaries(outcomes):
    cases = {
        # patient: (measure, baseline, latest) -> the parts expected
        "q1": ("phq9", 12, 4, {"remission": True, "response": True, "severityBand": "minimal"}),
        "q2": ("phq9", 12, 5, {"remission": False, "response": True, "severityBand": "mild"}),
        "q3": ("phq9", 12, 7, {"remission": False, "response": False, "percentChange": -41.7}),
        "q4": ("pcl5", 50, 41, {"clinicallyMeaningfulChange": False, "change": -9}),
        "q5": ("madrs", 30, 15, {"response": True, "remission": False, "severityBand": "mild"}),
        "q6": ("madrs", 30, 6, {"remission": True, "severityBand": "remission"}),
        "q7": ("gad7", 0, 3, {"change": 3, "severityBand": "minimal"}),
    }
    for p, (measure, first, last, _) in cases.items():
        enrolled(outcomes, p)
        await scored(outcomes, p, measure, first, "2026-02-20T09:00:00Z")
        await scored(outcomes, p, measure, last, "2026-04-01T09:00:00Z")
        dosed(outcomes, p, f"dose-{p}", DOSE_1)
    for p, (_, _, _, expected) in cases.items():
        (found,) = measures_of(await outcomes_of(outcomes, p)).values()
        assert {k: found.get(k) for k in expected} == expected, p
    (gad7,) = measures_of(await outcomes_of(outcomes, "q7")).values()
    assert "percentChange" not in gad7  # from a baseline of 0
    assert "response" not in gad7 and "remission" not in gad7  # GAD-7 defines neither


async def test_without_a_dose_the_baseline_is_the_earliest_score(outcomes):
    p = enrolled(outcomes, "p1")
    await scored(outcomes, p, "phq9", 22, "2026-03-10T09:00:00Z")
    await scored(outcomes, p, "phq9", 15, "2026-02-01T09:00:00Z")
    await scored(outcomes, p, "gad7", 11, "2026-02-01T09:00:00Z")
    found = measures_of(await outcomes_of(outcomes, p))
    assert (found["44261-6"]["baseline"], found["44261-6"]["latest"]) == (15, 22)
    assert found["44261-6"]["severityBand"] == "severe"
    # One score only: no latest, no change; the band is the baseline's.
    assert found["70274-6"] == {
        "instrument": {
            "system": "http://loinc.org",
            "code": "70274-6",
            "display": "GAD-7 total score",
        },
        "baseline": 11,
        "baselineTime": "2026-02-01T09:00:00Z",
        "severityBand": "moderate",
    }


async def test_events_in_time_order_with_windows_and_offsets(outcomes):
    p = enrolled(outcomes, "p1")
    dosed(outcomes, p, "d1", DOSE_1, window=WINDOW)
    emdr(outcomes, p, "a1", "2026-03-03T10:30:00Z", "d1", 24.5)
    emdr(outcomes, p, "a2", "2026-03-04T10:30:00Z", "d1", 48.5, status="cancelled")
    emdr(outcomes, p, "a3", "2026-03-05T10:30:00Z", "d1", 72.5, status="pending")  # a hold
    suds = await scored(outcomes, p, "suds", 8, "2026-03-03T10:35:00Z")
    await scored(outcomes, p, "suds", 2, "2026-03-03T11:25:00Z")
    baseline = await scored(outcomes, p, "phq9", 19, DOSE_1)
    summary = await outcomes_of(outcomes, p)
    events = events_of(summary)
    assert [(e["type"], e["time"]) for e in events] == [
        ("score", DOSE_1),  # at the same instant, the score comes before the dose
        ("dose", DOSE_1),
        ("emdr-session", "2026-03-03T10:30:00Z"),
        ("score", "2026-03-03T10:35:00Z"),
        ("score", "2026-03-03T11:25:00Z"),
    ]  # neither the cancelled session nor the hold is on the timeline
    assert events[0]["reference"] == {"reference": f"Observation/{baseline}"}
    assert events[1] == {
        "type": "dose",
        "time": DOSE_1,
        "reference": {"reference": "MedicationAdministration/d1"},
        **WINDOW,
    }
    assert events[2] == {
        "type": "emdr-session",
        "time": "2026-03-03T10:30:00Z",
        "reference": {"reference": "Appointment/a1"},
        "offsetHours": 24.5,
        "dose": {"reference": "MedicationAdministration/d1"},
    }
    assert events[3] == {
        "type": "score",
        "time": "2026-03-03T10:35:00Z",
        "reference": {"reference": f"Observation/{suds}"},
        "instrument": {"system": LOCAL, "code": "suds", "display": "SUDS rating"},
        "value": 8,
    }
    # SUDS is never taken before a dose: its baseline is the earliest rating.
    found = measures_of(summary)["suds"]
    assert (found["baseline"], found["latest"], found["change"]) == (8, 2, -6)


async def test_unknown_deleted_foreign_and_unscoped(outcomes):
    assert_outcome(await outcomes.get("/Patient/nobody/$outcomes"), 404, "not-found")
    p = enrolled(outcomes, "p1")
    await scored(outcomes, p, "phq9", 12, "2026-02-20T09:00:00Z")
    other_practice = bearer(practice="Organization/b")
    assert_outcome(
        await outcomes.get(f"/Patient/{p}/$outcomes", headers=other_practice), 404, "not-found"
    )
    own_practice = bearer(practice="Organization/a")
    assert (await outcomes.get(f"/Patient/{p}/$outcomes", headers=own_practice)).status_code == 200
    no_observations = bearer(
        scope="system/Patient.rs system/MedicationAdministration.rs system/Appointment.rs"
    )
    assert_outcome(
        await outcomes.get(f"/Patient/{p}/$outcomes", headers=no_observations), 403, "forbidden"
    )
    no_doses = bearer(scope="system/Patient.rs system/Observation.rs system/Appointment.rs")
    assert_outcome(
        await outcomes.get(f"/Patient/{p}/$outcomes", headers=no_doses), 403, "forbidden"
    )
    deleted(outcomes, "Patient", p, version=2)  # at intake
    assert (await outcomes.get(f"/Patient/{p}/$outcomes")).status_code == 410


async def test_the_patients_outcomes_as_a_bundle_are_their_everything(outcomes):
    p = enrolled(outcomes, "p1")
    enrolled(outcomes, "p2")
    score_id = await scored(outcomes, p, "phq9", 12, "2026-02-20T09:00:00Z")
    await scored(outcomes, "p2", "phq9", 14, "2026-02-20T09:00:00Z")
    dosed(outcomes, p, "d1", DOSE_1)
    emdr(outcomes, p, "a1", "2026-03-03T10:30:00Z", "d1", 24.5)
    types = "Observation,MedicationAdministration,Appointment,Encounter"
    response = await outcomes.get(f"/Patient/{p}/$everything", params={"_type": f"Patient,{types}"})
    assert response.status_code == 200, response.text
    bundle = response.json()
    assert bundle["resourceType"] == "Bundle"
    found = [f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle["entry"]]
    assert found == [
        "Patient/p1",
        "Appointment/a1",
        "MedicationAdministration/d1",
        f"Observation/{score_id}",
    ]
    other_practice = bearer(practice="Organization/b")
    response = await outcomes.get(f"/Patient/{p}/$everything", headers=other_practice)
    assert_outcome(response, 404, "not-found")


async def test_the_summary_drawn_as_the_patients_trajectory(outcomes):
    p = enrolled(outcomes, "p1")
    await scored(outcomes, p, "phq9", 18, "2026-02-20T09:00:00Z")
    await scored(outcomes, p, "phq9", 9, "2026-03-20T09:00:00Z")
    dosed(outcomes, p, "d1", DOSE_1, window=WINDOW)
    emdr(outcomes, p, "a1", "2026-03-03T10:30:00Z", "d1", 24.5)
    response = await outcomes.get(f"/Patient/{p}/$outcomes", headers={"Accept": "image/svg+xml"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("image/svg+xml")
    shown = " ".join("".join(t.itertext()) for t in ET.fromstring(response.content).iter(SVG_TEXT))
    assert "Patient/p1: outcomes over time" in shown and "PHQ-9 total score" in shown
    response = await outcomes.get(f"/Patient/{p}/$outcomes", params={"_format": "png"})
    assert response.content.startswith(b"\x89PNG")
