"""`EpisodeOfCare/{id}/$review`: a psychiatrist's decision on an onhold episode."""

from __future__ import annotations

import asyncio
import json

import httpx
from sqlalchemy import select

from shared.db.models import OutboxRow
from tests.auth_support import mint
from tests.conftest import BACKENDS
from tests.enrolment_support import (
    PSYCHIATRIST,
    as_user,
    given_consent,
    last_reason,
    review,
    review_body,
    screened_patient,
    statuses,
)
from tests.fhir_asserts import assert_outcome
from tests.outbox_rows import RESOURCE_EVENTS
from tests.screening_support import episode, open_issues


@BACKENDS
async def test_eligible_without_consent_waitlists_and_mitigates_the_issues(
    intake: httpx.AsyncClient,
):
    patient_id, found = await screened_patient(intake, yes=("maoi-use", "bipolar-disorder"))
    assert found["status"] == "onhold"
    reviewed = await review(intake, found["id"], reason="Stable on lithium; MAOI stopped")
    assert reviewed.status_code == 200, reviewed.text
    body = reviewed.json()
    assert body["resourceType"] == "EpisodeOfCare" and body["id"] == found["id"]
    assert body["status"] == "waitlist"
    assert statuses(body) == ["onhold", "waitlist"]
    reason = last_reason(body)
    assert "eligible" in reason and "Stable on lithium" in reason
    assert "Practitioner/psy-1" in reason
    # The issues stay open and readable, each with the review as its mitigation.
    issues = await open_issues(intake, patient_id)
    assert len(issues) == 2
    for issue in issues:
        [mitigation] = issue["mitigation"]
        assert mitigation["author"] == {"reference": "Practitioner/psy-1"}
        assert mitigation["date"]
        assert mitigation["action"]["coding"][0]["code"] == "eligible"
        assert "Stable on lithium; MAOI stopped" in mitigation["action"]["text"]
        read = await intake.get(f"/DetectedIssue/{issue['id']}")
        assert read.status_code == 200 and read.json()["status"] == "final"
    assert (await episode(intake, patient_id))["meta"] == body["meta"]


async def test_eligible_with_a_consent_in_force_is_active(intake: httpx.AsyncClient):
    patient_id, found = await screened_patient(intake)
    await given_consent(intake, patient_id)
    assert (await episode(intake, patient_id))["status"] == "onhold"  # consent alone: no
    reviewed = await review(intake, found["id"])
    assert reviewed.status_code == 200, reviewed.text
    assert reviewed.json()["status"] == "active"


async def test_excluded_cancels_and_consent_does_not_reopen(intake: httpx.AsyncClient):
    patient_id, found = await screened_patient(intake)
    reviewed = await review(intake, found["id"], "excluded", reason="MAOI cannot be stopped")
    assert reviewed.status_code == 200, reviewed.text
    assert reviewed.json()["status"] == "cancelled"
    [issue] = await open_issues(intake, patient_id)
    assert issue["mitigation"][0]["action"]["coding"][0]["code"] == "excluded"
    await given_consent(intake, patient_id)
    assert statuses(await episode(intake, patient_id)) == ["onhold", "cancelled"]


async def test_reviewed_eligible_follows_consent_and_never_goes_back_on_hold(
    intake: httpx.AsyncClient,
):
    patient_id, found = await screened_patient(intake)
    await review(intake, found["id"])
    consent_id = await given_consent(intake, patient_id)
    assert (await episode(intake, patient_id))["status"] == "active"
    assert (await intake.delete(f"/Consent/{consent_id}")).status_code == 204
    assert statuses(await episode(intake, patient_id)) == [
        "onhold",
        "waitlist",
        "active",
        "waitlist",
    ]


async def test_only_an_onhold_episode_is_reviewed(intake: httpx.AsyncClient):
    _, found = await screened_patient(intake, yes=())
    refused = await review(intake, found["id"])
    assert_outcome(refused, 409, "conflict")
    assert refused.json()["issue"][0]["expression"] == ["EpisodeOfCare.status"]
    assert "'waitlist'" in refused.json()["issue"][0]["diagnostics"]
    _, held = await screened_patient(intake)
    assert (await review(intake, held["id"])).status_code == 200
    assert (await review(intake, held["id"], "excluded")).status_code == 409  # once only


async def test_only_a_practitioner_reviews(intake: httpx.AsyncClient):
    patient_id, found = await screened_patient(intake)
    for headers in (as_user(None), as_user("Patient/p-1"), as_user("RelatedPerson/r-1")):
        refused = await review(intake, found["id"], headers=headers)
        assert_outcome(refused, 403, "forbidden")
    scoped = {"Authorization": f"Bearer {mint('system/EpisodeOfCare.u', user='Practitioner/x')}"}
    refused = await review(intake, found["id"], headers=scoped)
    assert_outcome(refused, 403, "forbidden")
    assert "system/DetectedIssue.u" in refused.json()["issue"][0]["diagnostics"]
    unscoped = {"Authorization": f"Bearer {mint('system/Patient.r', user='Practitioner/x')}"}
    assert_outcome(await review(intake, found["id"], headers=unscoped), 403, "forbidden")
    assert statuses(await episode(intake, patient_id)) == ["onhold"]
    assert "mitigation" not in (await open_issues(intake, patient_id))[0]


async def test_bad_parameters_are_named(intake: httpx.AsyncClient):
    _, found = await screened_patient(intake)
    url = f"/EpisodeOfCare/{found['id']}/$review"
    refused = await review(intake, found["id"], "maybe")
    assert_outcome(refused, 400, "invalid")
    assert "decision" in refused.json()["issue"][0]["expression"][0]
    blank = await review(intake, found["id"], reason="  ")
    assert_outcome(blank, 400, "invalid")
    assert "reason" in blank.json()["issue"][0]["expression"][0]
    missing = {"resourceType": "Parameters", "parameter": review_body()["parameter"][:1]}
    refused = await intake.post(url, json=missing, headers=PSYCHIATRIST)
    assert_outcome(refused, 400, "invalid")
    assert refused.json()["issue"][0]["expression"] == ["reason"]
    assert (await intake.get(url, headers=PSYCHIATRIST)).status_code == 405
    assert_outcome(await review(intake, "no-such-episode"), 404, "not-found")
    assert statuses(await episode(intake, found["patient"]["reference"][8:])) == ["onhold"]


@BACKENDS
async def test_a_practice_reviews_only_its_own_patients(intake: httpx.AsyncClient):
    practice_a = {"reference": "Organization/a"}
    patient_id, found = await screened_patient(intake, managingOrganization=practice_a)
    other = as_user(practice="Organization/b")
    assert_outcome(await review(intake, found["id"], headers=other), 404, "not-found")
    assert statuses(await episode(intake, patient_id)) == ["onhold"]
    own = await review(intake, found["id"], headers=as_user(practice="Organization/a"))
    assert own.status_code == 200, own.text


@BACKENDS
async def test_the_review_publishes_its_changes_in_one_unit_of_work(intake: httpx.AsyncClient):
    patient_id, found = await screened_patient(intake)
    database = intake._transport.app.state.fhir.database  # type: ignore[attr-defined]

    def events() -> list[tuple[str, str]]:
        with database.read() as session:
            rows = session.execute(
                select(OutboxRow.payload).where(RESOURCE_EVENTS).order_by(OutboxRow.pk)
            ).scalars()
            return [(e["subject"], e["versionid"]) for e in map(json.loads, rows)]

    before = len(events())
    reviewed = (await review(intake, found["id"])).json()
    [issue] = await open_issues(intake, patient_id)
    assert events()[before:] == [
        (f"DetectedIssue/{issue['id']}", "2"),
        (f"EpisodeOfCare/{found['id']}", reviewed["meta"]["versionId"]),
    ]


@BACKENDS
async def test_two_concurrent_reviews_one_decides(intake: httpx.AsyncClient):
    patient_id, found = await screened_patient(intake)
    answers = await asyncio.gather(
        review(intake, found["id"], "eligible"), review(intake, found["id"], "excluded")
    )
    assert sorted(r.status_code for r in answers) == [200, 409], [r.text for r in answers]
    [issue] = await open_issues(intake, patient_id)
    assert len(issue["mitigation"]) == 1
    assert len(statuses(await episode(intake, patient_id))) == 2
