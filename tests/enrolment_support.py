"""Builders for enrolment tests: consents, an onhold patient, a review, practice tokens."""

from __future__ import annotations

from typing import Any

import httpx

from tests.auth_support import mint
from tests.factories import patient
from tests.screening_support import episode, screening

CONSENT_SCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"
# A relative contraindication: screening puts the episode on hold for review.
RELATIVE = "maoi-use"


def as_user(user: str | None = "Practitioner/psy-1", practice: object = "*") -> dict[str, str]:
    """Headers of a programme staff token acting for `user` (practice-limited if told)."""
    return {"Authorization": f"Bearer {mint(practice=practice, user=user)}"}


PSYCHIATRIST = as_user()


def consent(
    patient_id: str,
    *,
    status: str = "active",
    scope: str = "treatment",
    deny: bool = False,
    period: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A Consent of the patient; `deny` makes it a refusal, `period` bounds its provision."""
    provision: dict[str, Any] = {"type": "deny" if deny else "permit"}
    if period is not None:
        provision["period"] = period
    return {
        "resourceType": "Consent",
        "status": status,
        "scope": {"coding": [{"system": CONSENT_SCOPE, "code": scope}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": f"Patient/{patient_id}"},
        "policyRule": {"text": "programme treatment consent"},
        "provision": provision,
    }


async def given_consent(intake: httpx.AsyncClient, patient_id: str, **kwargs: Any) -> str:
    created = await intake.post("/Consent", json=consent(patient_id, **kwargs))
    assert created.status_code == 201, created.text
    return created.json()["id"]


async def screened_patient(
    intake: httpx.AsyncClient, yes: tuple[str, ...] = (RELATIVE,), **extra: Any
) -> tuple[str, dict[str, Any]]:
    """A patient (with `extra` fields) screened with `yes`; the patient id and episode."""
    created = await intake.post("/Patient", json=patient(**extra))
    assert created.status_code == 201, created.text
    patient_id = created.json()["id"]
    response = await intake.post("/QuestionnaireResponse", json=screening(patient_id, yes=yes))
    assert response.status_code == 201, response.text
    return patient_id, await episode(intake, patient_id)


def review_body(decision: str = "eligible", reason: str = "MAOI stopped 3 weeks ago") -> Any:
    return {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "decision", "valueCode": decision},
            {"name": "reason", "valueString": reason},
        ],
    }


async def review(
    intake: httpx.AsyncClient,
    episode_id: str,
    decision: str = "eligible",
    headers: dict[str, str] | None = None,
    **kwargs: Any,
) -> httpx.Response:
    return await intake.post(
        f"/EpisodeOfCare/{episode_id}/$review",
        json=review_body(decision, **kwargs),
        headers=PSYCHIATRIST if headers is None else headers,
    )


def statuses(found: dict[str, Any]) -> list[str]:
    return [h["status"] for h in found["statusHistory"]]


def last_reason(found: dict[str, Any]) -> str:
    """The reason extension of the episode's newest statusHistory entry."""
    extensions = found["statusHistory"][-1]["extension"]
    assert [e["url"].rsplit("/", 1)[-1] for e in extensions] == ["episode-status-reason"]
    return extensions[0]["valueString"]
