"""A completed dose stores its plasticity window (and its event carries it); $plasticity-window."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.auth_support import bearer
from tests.booking_support import enrol
from tests.conftest import BACKENDS
from tests.dosing_support import (
    BASE,
    SPRAVATO,
    SUBLINGUAL,
    VERSION,
    WINDOW,
    care_plan,
    clinician,
    dose,
    tailoring,
    window_of,
)
from tests.fhir_asserts import assert_outcome
from tests.holds_support import dosing_session, ready, weight
from tests.outbox_rows import events_of
from tests.replicas import replicate

NASAL = {"medication": SPRAVATO, "route": "nasal", "mg": 56}


@pytest.fixture(autouse=True)
async def _sessions(scheduling: httpx.AsyncClient) -> None:
    """Each patient of these tests weighs 70 kg and has a booked dosing session; those
    whose test agrees its own course (p2, p4, p10) are booked by the test."""
    await ready(scheduling, *(f"p{n}" for n in range(1, 11) if n not in (2, 4, 10)))


async def _create(client: httpx.AsyncClient, body: dict[str, Any], **kwargs: Any) -> dict:
    created = await client.post(f"/{body['resourceType']}", json=body, **kwargs)
    assert created.status_code == 201, created.text
    return created.json()


@BACKENDS
async def test_a_completed_dose_stores_its_window_and_its_event_carries_it(
    scheduling: httpx.AsyncClient,
):
    given = await _create(scheduling, dose("p1", **NASAL))
    expected = {
        "windowStart": "2026-03-02T12:40:00Z",
        "optimalStart": "2026-03-03T10:40:00Z",
        "optimalEnd": "2026-03-05T10:40:00Z",
        "windowEnd": "2026-03-09T10:40:00Z",
        "protocol": f"intranasal-esketamine|{VERSION}",
    }
    # p1's course is IV: a nasal dose follows its protocol by code and route, untailored.
    assert window_of(given) == expected
    read = (await scheduling.get(f"/MedicationAdministration/{given['id']}")).json()
    assert window_of(read) == expected
    (event,) = events_of(scheduling, "MedicationAdministration")
    assert event["type"] == "fhir.MedicationAdministration.created"
    assert window_of(event["data"]) == expected

    answer = await scheduling.get(f"/MedicationAdministration/{given['id']}/$plasticity-window")
    assert answer.status_code == 200, answer.text
    parameters = answer.json()
    assert parameters["resourceType"] == "Parameters"
    by_name = {
        p["name"]: p.get("valueDateTime", p.get("valueString")) for p in parameters["parameter"]
    }
    assert by_name == expected
    posted = await scheduling.post(
        f"/MedicationAdministration/{given['id']}/$plasticity-window",
        json={"resourceType": "Parameters"},
    )
    assert posted.json() == parameters


async def test_the_care_plan_tailoring_in_force_is_used_and_named(
    scheduling: httpx.AsyncClient,
):
    plan = await _create(
        scheduling, care_plan("p2", extension=[tailoring(optimalStart=12)]), headers=clinician()
    )
    await ready(scheduling, "p2", course=False)
    first = await _create(scheduling, dose("p2"))
    window = window_of(first)
    assert window["optimalStart"] == "2026-03-02T22:40:00Z"  # 12 h, not the protocol's 24 h
    assert window["windowStart"] == "2026-03-02T12:40:00Z"  # the protocol's 2 h
    assert window["carePlan"] == {"reference": f"CarePlan/{plan['id']}/_history/1"}

    retailored = {**plan, "extension": [tailoring("tolerates less", optimalStart=30)]}
    await scheduling.put(f"/CarePlan/{plan['id']}", json=retailored, headers=clinician())
    # The earlier dose keeps the window in force when it was given...
    kept = (await scheduling.get(f"/MedicationAdministration/{first['id']}")).json()
    assert window_of(kept)["optimalStart"] == "2026-03-02T22:40:00Z"
    # ...a later one gets the new tailoring.
    later = await _create(scheduling, dose("p2", ended="2026-03-04T10:40:00Z"))
    assert window_of(later)["optimalStart"] == "2026-03-05T16:40:00Z"
    assert window_of(later)["carePlan"] == {"reference": f"CarePlan/{plan['id']}/_history/2"}


async def test_the_in_session_protocol_applies_through_the_care_plan(
    scheduling: httpx.AsyncClient,
):
    sublingual = {"medication": SUBLINGUAL, "route": "sublingual"}
    # Under an IV course a sublingual dose follows sublingual-racemic (100 to 400 mg).
    alone = await _create(scheduling, dose("p3", mg=100, **sublingual))
    assert window_of(alone)["protocol"] == f"sublingual-racemic|{VERSION}"
    await _create(scheduling, care_plan("p4", "sublingual-emdr-in-session"))
    await ready(scheduling, "p4", course=False)
    in_session = await _create(scheduling, dose("p4", mg=50, **sublingual))
    window = window_of(in_session)
    assert window["protocol"] == f"sublingual-emdr-in-session|{VERSION}"
    assert window["windowStart"] == "2026-03-02T10:40:00Z"  # 0 h: during the session
    # Its range is 37.5 to 75 mg: 100 mg is refused under this CarePlan.
    refused = await scheduling.post(
        "/MedicationAdministration", json=dose("p4", mg=100, **sublingual)
    )
    assert "37.5 to 75 mg" in assert_outcome(refused, 422, "business-rule")["diagnostics"]


async def test_no_window_until_completed_and_none_from_a_client(scheduling: httpx.AsyncClient):
    body = dose("p5", status="in-progress")
    body["extension"] = [
        {"url": WINDOW, "extension": [{"url": "protocol", "valueString": "forged|1"}]}
    ]
    given = await _create(scheduling, body)
    # Only the dose's mg/kg (35 mg at 70 kg) is stamped before completion.
    assert [e["url"] for e in given["extension"]] == [f"{BASE}/StructureDefinition/dose-per-kg"]
    url = f"/MedicationAdministration/{given['id']}/$plasticity-window"
    outcome = assert_outcome(await scheduling.get(url), 422, "processing")
    assert "not completed" in outcome["diagnostics"]
    completed = await scheduling.put(
        f"/MedicationAdministration/{given['id']}", json={**given, "status": "completed"}
    )
    assert completed.status_code == 200, completed.text
    assert (await scheduling.get(url)).status_code == 200
    assert_outcome(
        await scheduling.get("/MedicationAdministration/nope/$plasticity-window"), 404, "not-found"
    )


async def test_other_medications_are_left_alone(scheduling: httpx.AsyncClient):
    other = dose(
        "p6",
        medication={"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "26225"},
        route=None,
        mg=4,
    )
    given = await _create(scheduling, other)
    assert "extension" not in given
    outcome = assert_outcome(
        await scheduling.get(f"/MedicationAdministration/{given['id']}/$plasticity-window"),
        422,
        "processing",
    )
    assert "no dosing protocol applies" in outcome["diagnostics"]


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (dose("p1", route=None), "MedicationAdministration.dosage.route"),
        (dose("p1", route="nasal"), "MedicationAdministration.dosage.route"),
        (
            {**dose("p1"), "effectivePeriod": {"start": "2026-03-02T10:00:00Z"}},
            "MedicationAdministration.effectivePeriod.end",
        ),
        (
            {
                **{k: v for k, v in dose("p1").items() if k != "effectivePeriod"},
                "effectiveDateTime": "2026-03-02",
            },
            "MedicationAdministration.effectiveDateTime",
        ),
    ],
)
async def test_a_protocol_dose_needs_its_route_and_end(
    scheduling: httpx.AsyncClient, body: dict[str, Any], where: str
):
    refused = await scheduling.post("/MedicationAdministration", json=body)
    assert assert_outcome(refused, 422, "invalid")["expression"] == [where]


async def test_two_active_courses_for_one_dose_are_refused(scheduling: httpx.AsyncClient):
    await _create(scheduling, care_plan("p9"))  # beside the course p9 has
    refused = await scheduling.post("/MedicationAdministration", json=dose("p9"))
    outcome = assert_outcome(refused, 422, "invalid")
    assert outcome["expression"] == ["MedicationAdministration.subject"]


async def test_the_window_needs_read_access_to_the_dose(scheduling: httpx.AsyncClient):
    given = await _create(scheduling, dose("p1", **NASAL))
    url = f"/MedicationAdministration/{given['id']}/$plasticity-window"
    other_scope = bearer(scope="system/Appointment.rs")
    assert_outcome(await scheduling.get(url, headers=other_scope), 403, "forbidden")
    reader = bearer(scope="system/MedicationAdministration.r")
    assert (await scheduling.get(url, headers=reader)).status_code == 200


async def test_a_course_and_its_first_dose_in_one_transaction(scheduling: httpx.AsyncClient):
    enrol(scheduling, "p10")
    replicate(scheduling, "Observation", "weight-p10", weight("p10", 70))
    plan = care_plan("p10", extension=[tailoring(optimalStart=12)])
    session = "urn:uuid:8f0c3a52-6d1e-4c1b-9a57-0d4f2f1c9b10"
    given = {**dose("p10"), "supportingInformation": [{"reference": session}]}
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": plan, "request": {"method": "POST", "url": "CarePlan"}},
            {
                "fullUrl": session,
                "resource": dosing_session("p10"),
                "request": {"method": "POST", "url": "Appointment"},
            },
            {"resource": given, "request": {"method": "POST", "url": "MedicationAdministration"}},
        ],
    }
    answer = await scheduling.post("", json=bundle, headers=clinician())
    assert answer.status_code == 200, answer.text
    found = (await scheduling.get("/MedicationAdministration", params={"patient": "p10"})).json()
    window = window_of(found["entry"][0]["resource"])
    assert window["optimalStart"] == "2026-03-02T22:40:00Z"
    assert window["carePlan"]["reference"].startswith("CarePlan/")
