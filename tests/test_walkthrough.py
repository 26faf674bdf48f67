"""The README's intake walk-through, step by step, with the very files it pastes.

The README sends `docs/walkthrough/*.json` with curl after filling in `{{practice}}`,
`{{patient}}` and `{{questionnaire}}`; this test sends the same files in the same order through
the API with a clinician's token and checks what the README says each step shows.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx

from services.intake.app import create_app
from tests.auth_support import mint
from tests.conftest import make_settings
from tests.kafka_support import serving

ROOT = Path(__file__).resolve().parent.parent
STEPS = ROOT / "docs" / "walkthrough"
README = ROOT / "README.md"
CLINICIAN = {"Authorization": f"Bearer {mint('system/*.cruds', user='Practitioner/dr-example')}"}


def _filled(name: str, **values: str) -> dict[str, Any]:
    text = (STEPS / name).read_text()
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    assert "{{" not in text, f"{name} has a placeholder this step does not fill"
    return json.loads(text)


def _walkthrough_block() -> str:
    text = README.read_text()
    start = text.index("## Intake: from referral to enrolment")
    return text[start : text.index("\n## ", start + 1)]


def test_the_readme_sends_every_step_file_in_order():
    block = _walkthrough_block()
    sent = re.findall(r"fill (\w+\.json)", block)
    assert sent == [
        "practice.json",
        "patient.json",
        "referral.json",
        "screening.json",
        "review.json",
        "consent.json",
    ]
    assert sorted(sent) == sorted(p.name for p in STEPS.glob("*.json"))


async def test_referral_screening_review_consent_and_enrolment(database_url: str):
    # Started with its lifespan, as `make run` does: the Questionnaire is published at start.
    async with serving(create_app(make_settings("intake", database_url))) as intake:
        await _walk(intake)


async def _walk(intake: httpx.AsyncClient) -> tuple[str, str]:
    """The walk-through; the patient's and the episode's ids (its end state, which the course
    walk-through, tests/test_course_walkthrough.py, goes on from)."""

    async def send(method: str, path: str, body: dict[str, Any] | None = None) -> dict:
        response = await intake.request(method, path, json=body, headers=CLINICIAN)
        assert response.status_code in (200, 201), f"{method} {path}: {response.text}"
        return response.json()

    practice = (await send("POST", "/Organization", _filled("practice.json")))["id"]
    pid = (await send("POST", "/Patient", _filled("patient.json", practice=practice)))["id"]
    await send("POST", "/ServiceRequest", _filled("referral.json", practice=practice, patient=pid))
    episodes = await send("GET", f"/EpisodeOfCare?patient=Patient/{pid}")
    assert [e["resource"]["status"] for e in episodes["entry"]] == ["planned"]

    found = await send("GET", "/Questionnaire?name=KetamineEmdrScreening&_sort=-_lastUpdated")
    questionnaire = found["entry"][0]["resource"]
    canonical = f"{questionnaire['url']}|{questionnaire['version']}"
    screening = _filled("screening.json", practice=practice, patient=pid, questionnaire=canonical)
    await send("POST", "/QuestionnaireResponse", screening)
    episode = (await send("GET", f"/EpisodeOfCare?patient=Patient/{pid}"))["entry"][0]["resource"]
    assert episode["status"] == "onhold"  # baseline blood pressure 152/94: review needed
    issues = await send("GET", f"/DetectedIssue?patient=Patient/{pid}&status=final")
    (issue,) = [e["resource"] for e in issues["entry"]]
    assert issue["code"]["coding"][0]["code"] == "uncontrolled-hypertension"

    reviewed = await send("POST", f"/EpisodeOfCare/{episode['id']}/$review", _filled("review.json"))
    assert reviewed["status"] == "waitlist"  # eligible, consent still missing
    mitigated = await send("GET", f"/DetectedIssue/{issue['id']}")
    assert mitigated["mitigation"][-1]["author"] == {"reference": "Practitioner/dr-example"}

    consent = await send("POST", "/Consent", _filled("consent.json", patient=pid))
    enrolment = await send("GET", f"/Patient/{pid}/$enrolment")
    values = {p["name"]: p for p in enrolment["parameter"]}
    assert values["status"]["valueCode"] == "active"
    assert values["episode"]["valueReference"]["reference"] == f"EpisodeOfCare/{episode['id']}"
    assert values["consent"]["valueReference"]["reference"] == f"Consent/{consent['id']}"
    assert values["ruleTableVersion"]["valueString"]
    return pid, episode["id"]
