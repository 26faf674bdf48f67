"""CarePlan: the dosing course's protocol and its window tailoring, checked and authored."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.auth_support import bearer
from tests.conftest import BACKENDS
from tests.dosing_support import (
    BASE,
    DR_ONE,
    TAILORING,
    VERSION,
    care_plan,
    clinician,
    tailoring,
)
from tests.fhir_asserts import assert_outcome

WHERE = f"CarePlan.extension('{TAILORING}')"


def _tailoring_of(plan: dict[str, Any]) -> dict[str, Any]:
    (found,) = [e for e in plan["extension"] if e["url"] == TAILORING]
    return {sub["url"]: sub for sub in found["extension"]}


def _author(plan: dict[str, Any]) -> str:
    return _tailoring_of(plan)["author"]["valueReference"]["reference"]


@BACKENDS
async def test_the_tailoring_author_is_the_clinician_who_changed_it(
    scheduling: httpx.AsyncClient,
):
    forged = tailoring(optimalStart=12)
    forged["extension"].append(
        {"url": "author", "valueReference": {"reference": "Practitioner/someone-else"}}
    )
    body = care_plan("p1", version=None, extension=[forged])
    created = await scheduling.post("/CarePlan", json=body, headers=clinician())
    assert created.status_code == 201, created.text
    plan = created.json()
    assert _author(plan) == DR_ONE
    # The protocol version in force is pinned on a canonical that left it out.
    assert plan["instantiatesCanonical"] == [f"{BASE}/PlanDefinition/iv-racemic|{VERSION}"]

    # Another clinician edits something else: the tailoring and its author stay.
    retitled = {**plan, "title": "Course, renamed"}
    updated = await scheduling.put(
        f"/CarePlan/{plan['id']}", json=retitled, headers=clinician("Practitioner/dr-2")
    )
    assert updated.status_code == 200, updated.text
    assert _author(updated.json()) == DR_ONE

    # A change of the tailoring is authored by whoever changed it.
    changed = {**updated.json(), "extension": [tailoring("faster", optimalStart=6)]}
    again = await scheduling.put(
        f"/CarePlan/{plan['id']}", json=changed, headers=clinician("Practitioner/dr-2")
    )
    assert again.status_code == 200, again.text
    assert _author(again.json()) == "Practitioner/dr-2"
    history = (await scheduling.get(f"/CarePlan/{plan['id']}/_history")).json()
    assert history["total"] == 3


async def test_a_tailoring_change_needs_a_clinician(scheduling: httpx.AsyncClient):
    body = care_plan("p1", extension=[tailoring(optimalStart=12)])
    # The suite's staff token names no person.
    assert_outcome(await scheduling.post("/CarePlan", json=body), 403, "forbidden")
    patient_user = bearer(user="Patient/p1")
    assert_outcome(
        await scheduling.post("/CarePlan", json=body, headers=patient_user), 403, "forbidden"
    )
    # Without a tailoring, no person is needed.
    assert (await scheduling.post("/CarePlan", json=care_plan("p1"))).status_code == 201
    # Removing one is a change of it: a clinician's.
    tailored = (await scheduling.post("/CarePlan", json=body, headers=clinician())).json()
    untailored = {k: v for k, v in tailored.items() if k != "extension"}
    url = f"/CarePlan/{tailored['id']}"
    assert_outcome(await scheduling.put(url, json=untailored), 403, "forbidden")
    removed = await scheduling.put(url, json=untailored, headers=clinician())
    assert removed.status_code == 200, removed.text
    assert "extension" not in removed.json()


@pytest.mark.parametrize(
    ("extension", "where", "text"),
    [
        (tailoring(optimalStart=80), WHERE, "must be ordered"),
        (tailoring(windowEnd=1), WHERE, "must be ordered"),
        (tailoring(windowStart=-2), WHERE, "must not be before"),
        (tailoring(None, optimalStart=12), f"{WHERE}.extension('reason')", "needs its reason"),
        (tailoring(" ", optimalStart=12), f"{WHERE}.extension('reason')", "needs its reason"),
        (tailoring(), WHERE, "at least one offset"),
        (
            {"url": TAILORING, "extension": [{"url": "later", "valueString": "x"}]},
            f"{WHERE}.extension('later')",
            "not 'later'",
        ),
    ],
)
async def test_a_malformed_tailoring_is_refused_naming_the_extension(
    scheduling: httpx.AsyncClient, extension: dict[str, Any], where: str, text: str
):
    body = care_plan("p1", extension=[extension])
    refused = await scheduling.post("/CarePlan", json=body, headers=clinician())
    outcome = assert_outcome(refused, 422, "invalid")
    assert outcome["expression"][0] == where
    assert text in outcome["diagnostics"]


async def test_an_offset_is_a_duration_in_hours(scheduling: httpx.AsyncClient):
    extension = tailoring(optimalStart=12)
    extension["extension"][0]["valueDuration"]["code"] = "d"
    refused = await scheduling.post(
        "/CarePlan", json=care_plan("p1", extension=[extension]), headers=clinician()
    )
    outcome = assert_outcome(refused, 422, "invalid")
    assert outcome["expression"] == [f"{WHERE}.extension('optimalStart')"]


@pytest.mark.parametrize(
    ("body", "text"),
    [
        (care_plan("p1", "iv-ketamine-daily"), "Unknown dosing protocol 'iv-ketamine-daily'"),
        (care_plan("p1", version="0.1"), "version '0.1' is not the one in force"),
    ],
)
async def test_an_unknown_protocol_is_refused(
    scheduling: httpx.AsyncClient, body: dict[str, Any], text: str
):
    outcome = assert_outcome(await scheduling.post("/CarePlan", json=body), 422, "invalid")
    assert outcome["expression"] == ["CarePlan.instantiatesCanonical[0]"]
    assert text in outcome["diagnostics"]


async def test_a_tailoring_needs_a_dosing_protocol(scheduling: httpx.AsyncClient):
    body = {**care_plan("p1"), "instantiatesCanonical": ["https://other.example/PlanDefinition/x"]}
    assert (await scheduling.post("/CarePlan", json=body)).status_code == 201
    body["extension"] = [tailoring(optimalStart=12)]
    outcome = assert_outcome(
        await scheduling.post("/CarePlan", json=body, headers=clinician()), 422, "invalid"
    )
    assert outcome["expression"] == [WHERE, "CarePlan.instantiatesCanonical"]


async def test_care_plan_search_parameters(scheduling: httpx.AsyncClient):
    plan = {
        **care_plan("p7", "intranasal-esketamine"),
        "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "736353004"}]}],
        "period": {"start": "2026-03-01", "end": "2026-04-30"},
        "encounter": {"reference": "Encounter/e1"},
        "activity": [{"reference": {"reference": "Appointment/a1"}}],
    }
    created = (await scheduling.post("/CarePlan", json=plan)).json()
    await scheduling.post("/CarePlan", json=care_plan("p8", status="completed"))
    canonical = f"{BASE}/PlanDefinition/intranasal-esketamine|{VERSION}"
    for params in (
        {"patient": "Patient/p7"},
        {"subject": "Patient/p7"},
        {"status": "active", "intent": "plan", "patient": "p7"},
        {"category": "http://snomed.info/sct|736353004"},
        {"instantiates-canonical": canonical},
        {"date": "ge2026-04-01"},
        {"encounter": "Encounter/e1"},
        {"activity-reference": "Appointment/a1"},
    ):
        found = (await scheduling.get("/CarePlan", params=params)).json()
        assert [e["resource"]["id"] for e in found.get("entry", [])] == [created["id"]], params
