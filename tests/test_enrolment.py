"""`Patient/{id}/$enrolment`: the patient's episode status and what decided it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from services.intake.screening.protocol import rule_table
from tests.auth_support import mint
from tests.conftest import BACKENDS
from tests.enrolment_support import PSYCHIATRIST, as_user, given_consent, review, screened_patient
from tests.fhir_asserts import assert_outcome
from tests.screening_support import episode, open_issues

VERSION = rule_table().version


async def enrolment(
    intake: httpx.AsyncClient, patient_id: str, headers: dict[str, str] | None = None
) -> dict[str, list[Any]]:
    """The answer's parameters by name, each a list of its values."""
    found = await intake.get(f"/Patient/{patient_id}/$enrolment", headers=headers or {})
    assert found.status_code == 200, found.text
    body = found.json()
    assert body["resourceType"] == "Parameters"
    named: dict[str, list[Any]] = {}
    for parameter in body.get("parameter", []):
        value = next(v for k, v in parameter.items() if k.startswith("value"))
        named.setdefault(parameter["name"], []).append(value)
    return named


@pytest.mark.parametrize(
    ("yes", "status"), [((), "waitlist"), (("maoi-use",), "onhold"), (("pregnancy",), "cancelled")]
)
async def test_each_screened_status_with_its_reasons(
    intake: httpx.AsyncClient, yes: tuple[str, ...], status: str
):
    patient_id, found = await screened_patient(intake, yes=yes)
    issues = await open_issues(intake, patient_id)
    assert len(issues) == len(yes)
    assert await enrolment(intake, patient_id) == {
        "status": [status],
        "episode": [{"reference": f"EpisodeOfCare/{found['id']}"}],
        **({"reason": [{"reference": f"DetectedIssue/{i['id']}"} for i in issues]} if yes else {}),
        "ruleTableVersion": [VERSION],
    }


@BACKENDS
async def test_active_names_the_consent_in_force(intake: httpx.AsyncClient):
    patient_id, _ = await screened_patient(intake, yes=())
    await given_consent(intake, patient_id, period={"end": "2021-01-01"})  # ended: not named
    consent_id = await given_consent(intake, patient_id)
    named = await enrolment(intake, patient_id)
    assert named["status"] == ["active"]
    assert named["consent"] == [{"reference": f"Consent/{consent_id}"}]
    # POST answers the same.
    posted = await intake.post(f"/Patient/{patient_id}/$enrolment")
    assert posted.status_code == 200, posted.text
    assert {"name": "consent", "valueReference": {"reference": f"Consent/{consent_id}"}} in (
        posted.json()["parameter"]
    )


async def test_reviewed_eligible_keeps_the_mitigated_reasons(intake: httpx.AsyncClient):
    patient_id, found = await screened_patient(intake)
    assert (await review(intake, found["id"])).status_code == 200
    named = await enrolment(intake, patient_id)
    assert named["status"] == ["waitlist"]
    [issue] = await open_issues(intake, patient_id)
    assert named["reason"] == [{"reference": f"DetectedIssue/{issue['id']}"}]


async def test_planned_finished_and_no_episode(intake: httpx.AsyncClient):
    created = await intake.post("/Patient", json={"resourceType": "Patient"})
    patient_id = created.json()["id"]
    # Not referred nor screened: 200 with nothing to report.
    empty = await intake.get(f"/Patient/{patient_id}/$enrolment")
    assert empty.status_code == 200 and empty.json() == {"resourceType": "Parameters"}
    referral = {
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "subject": {"reference": f"Patient/{patient_id}"},
    }
    assert (await intake.post("/ServiceRequest", json=referral)).status_code == 201
    planned = await episode(intake, patient_id)
    assert await enrolment(intake, patient_id) == {
        "status": ["planned"],
        "episode": [{"reference": f"EpisodeOfCare/{planned['id']}"}],
    }
    ended = {**planned, "status": "finished"}
    done = await intake.put(f"/EpisodeOfCare/{planned['id']}", json=ended, headers=PSYCHIATRIST)
    assert done.status_code == 200, done.text
    assert await enrolment(intake, patient_id) == {}


@BACKENDS
async def test_unknown_or_another_practices_patient_is_not_found(intake: httpx.AsyncClient):
    assert_outcome(await intake.get("/Patient/nobody/$enrolment"), 404, "not-found")
    practice_a = {"reference": "Organization/a"}
    patient_id, _ = await screened_patient(intake, managingOrganization=practice_a)
    url = f"/Patient/{patient_id}/$enrolment"
    other = await intake.get(url, headers=as_user(practice="Organization/b"))
    assert_outcome(other, 404, "not-found")
    own = await enrolment(intake, patient_id, headers=as_user(practice="Organization/a"))
    assert own["status"] == ["onhold"]


async def test_the_caller_needs_to_search_what_it_reports(intake: httpx.AsyncClient):
    patient_id, _ = await screened_patient(intake)
    url = f"/Patient/{patient_id}/$enrolment"
    patient_only = {"Authorization": f"Bearer {mint('system/Patient.r')}"}
    refused = await intake.get(url, headers=patient_only)
    assert_outcome(refused, 403, "forbidden")
    assert "system/EpisodeOfCare.s" in refused.json()["issue"][0]["diagnostics"]
    enough = "system/Patient.r system/EpisodeOfCare.s system/DetectedIssue.s system/Consent.s"
    allowed = await intake.get(url, headers={"Authorization": f"Bearer {mint(enough)}"})
    assert allowed.status_code == 200, allowed.text
    # It takes no parameters: anything given is named as unknown.
    assert_outcome(await intake.get(url, params={"since": "2026"}), 400, "invalid")
