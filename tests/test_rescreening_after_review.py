"""A screening sent again after a psychiatrist's review never undoes the review silently."""

from __future__ import annotations

import httpx
import pytest

from services.intake.enrolment.decision import status_after_rescreening
from tests.enrolment_support import given_consent, review, screened_patient, statuses
from tests.screening_support import episode, open_issues, screening, search


async def _response(intake: httpx.AsyncClient, patient_id: str) -> dict:
    (found,) = await search(intake, "/QuestionnaireResponse", subject=f"Patient/{patient_id}")
    return found


async def test_the_same_answers_again_keep_the_review(intake: httpx.AsyncClient):
    patient_id, found = await screened_patient(intake, yes=("maoi-use",))
    await given_consent(intake, patient_id)
    assert (await review(intake, found["id"])).json()["status"] == "active"
    sent = await _response(intake, patient_id)
    for status in ("completed", "amended"):  # a retry, then a mere status change
        again = await intake.put(
            f"/QuestionnaireResponse/{sent['id']}", json={**sent, "status": status}
        )
        assert again.status_code == 200, again.text
    now = await episode(intake, patient_id)
    assert now["status"] == "active"
    assert statuses(now)[-1] == "active" and statuses(now).count("onhold") == 1
    (issue,) = await open_issues(intake, patient_id)
    assert issue["mitigation"]


async def test_an_amendment_with_the_reviewed_finding_stays_cleared(intake: httpx.AsyncClient):
    patient_id, found = await screened_patient(intake, yes=("maoi-use",))
    await review(intake, found["id"])  # eligible, no consent: waitlist
    sent = await _response(intake, patient_id)
    amended = screening(patient_id, yes=("maoi-use",), weight=72, status="amended")
    changed = await intake.put(
        f"/QuestionnaireResponse/{sent['id']}", json={**amended, "id": sent["id"]}
    )
    assert changed.status_code == 200, changed.text
    assert (await episode(intake, patient_id))["status"] == "waitlist"
    (issue,) = await open_issues(intake, patient_id)
    assert issue["mitigation"][0]["action"]["coding"][0]["code"] == "eligible"


async def test_a_new_finding_after_an_eligible_review_needs_another(intake: httpx.AsyncClient):
    patient_id, found = await screened_patient(intake, yes=("maoi-use",))
    await review(intake, found["id"])
    sent = await _response(intake, patient_id)
    amended = screening(patient_id, yes=("maoi-use", "bipolar-disorder"), status="amended")
    await intake.put(f"/QuestionnaireResponse/{sent['id']}", json={**amended, "id": sent["id"]})
    assert (await episode(intake, patient_id))["status"] == "onhold"


async def test_an_excluded_patient_is_not_cleared_by_new_answers(intake: httpx.AsyncClient):
    patient_id, found = await screened_patient(intake, yes=("maoi-use",))
    assert (await review(intake, found["id"], "excluded")).json()["status"] == "cancelled"
    sent = await _response(intake, patient_id)
    clear = screening(patient_id, status="amended")
    await intake.put(f"/QuestionnaireResponse/{sent['id']}", json={**clear, "id": sent["id"]})
    # New answers reopen the question for a psychiatrist; they never clear it alone.
    assert (await episode(intake, patient_id))["status"] == "onhold"


@pytest.mark.parametrize(
    ("evaluated", "found", "reviewed", "consent", "expected"),
    [
        ("cancelled", {"pregnancy"}, {"maoi-use": "eligible"}, True, "cancelled"),
        ("onhold", {"maoi-use"}, {}, True, "onhold"),
        ("onhold", {"maoi-use"}, {"maoi-use": "eligible"}, True, "active"),
        ("onhold", {"maoi-use"}, {"maoi-use": "eligible"}, False, "waitlist"),
        ("onhold", {"maoi-use", "bipolar-disorder"}, {"maoi-use": "eligible"}, True, "onhold"),
        ("waitlist", set(), {"maoi-use": "eligible"}, False, "waitlist"),
        ("active", set(), {"maoi-use": "excluded"}, True, "onhold"),
    ],
)
def test_status_after_rescreening(evaluated, found, reviewed, consent, expected):
    assert status_after_rescreening(evaluated, found, reviewed, consent) == expected
