"""Screening: a completed QuestionnaireResponse becomes DetectedIssues and an episode status."""

from __future__ import annotations

import httpx
import pytest

from services.intake.screening.protocol import rule_table
from tests.auth_support import bearer
from tests.conftest import BACKENDS
from tests.screening_support import (
    KEYS,
    SYSTEM,
    URL,
    episode,
    new_patient,
    open_issues,
    screening,
    search,
)

TABLE = rule_table()


@pytest.mark.parametrize("key", KEYS)
async def test_each_contraindication_raises_its_issue(intake: httpx.AsyncClient, key: str):
    patient_id = await new_patient(intake)
    created = await intake.post("/QuestionnaireResponse", json=screening(patient_id, yes=(key,)))
    assert created.status_code == 201, created.text
    issues = await open_issues(intake, patient_id)
    assert len(issues) == 1
    issue = issues[0]
    coding = issue["code"]["coding"][0]
    assert (coding["system"], coding["code"], coding["version"]) == (SYSTEM, key, TABLE.version)
    kind = TABLE.rule(key).kind
    assert issue["severity"] == ("high" if kind == "absolute" else "moderate")
    assert issue["implicated"] == [{"reference": f"QuestionnaireResponse/{created.json()['id']}"}]
    assert issue["detail"]
    expected = "cancelled" if kind == "absolute" else "onhold"
    assert (await episode(intake, patient_id))["status"] == expected


def test_the_table_has_every_contraindication_key():
    assert KEYS == [
        "aneurysmal-vascular-disease",
        "arteriovenous-malformation",
        "intracerebral-haemorrhage-history",
        "ketamine-hypersensitivity",
        "pregnancy",
        "psychosis-or-schizophrenia",
        "bipolar-disorder",
        "substance-use-disorder-recent",
        "uncontrolled-hypertension",
        "arrhythmia-or-cerebrovascular-instability",
        "traumatic-brain-injury",
        "breastfeeding",
        "maoi-use",
        "benzodiazepine-high-dose",
        "family-history-psychosis",
    ]


@pytest.mark.parametrize(
    ("bp", "raised"), [((141, 80), True), ((130, 91), True), ((140, 90), False)]
)
async def test_baseline_bp_above_140_90_puts_the_episode_on_hold(
    intake: httpx.AsyncClient, bp: tuple[int, int], raised: bool
):
    patient_id = await new_patient(intake)
    created = await intake.post("/QuestionnaireResponse", json=screening(patient_id, bp=bp))
    assert created.status_code == 201, created.text
    codes = [i["code"]["coding"][0]["code"] for i in await open_issues(intake, patient_id)]
    assert codes == (["uncontrolled-hypertension"] if raised else [])
    assert (await episode(intake, patient_id))["status"] == ("onhold" if raised else "waitlist")


@BACKENDS
async def test_all_clear_is_waitlisted_with_the_rule_table_version(intake: httpx.AsyncClient):
    patient_id = await new_patient(intake)
    created = await intake.post("/QuestionnaireResponse", json=screening(patient_id))
    assert created.status_code == 201, created.text
    assert await open_issues(intake, patient_id) == []
    found = await episode(intake, patient_id)
    assert found["status"] == "waitlist"
    assert [h["status"] for h in found["statusHistory"]] == ["waitlist"]
    assert {"valueString": TABLE.version} in [
        {"valueString": e["valueString"]} for e in found["extension"]
    ]


async def test_all_clear_with_an_active_treatment_consent_is_active(intake: httpx.AsyncClient):
    patient_id = await new_patient(intake)
    consent = {
        "resourceType": "Consent",
        "status": "active",
        "scope": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                    "code": "treatment",
                }
            ]
        },
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": f"Patient/{patient_id}"},
        "policyRule": {"text": "programme treatment consent"},
    }
    assert (await intake.post("/Consent", json=consent)).status_code == 201
    await intake.post("/QuestionnaireResponse", json=screening(patient_id))
    assert (await episode(intake, patient_id))["status"] == "active"


async def test_amendment_re_evaluates_and_keeps_the_history(intake: httpx.AsyncClient):
    patient_id = await new_patient(intake)
    body = screening(patient_id, yes=("pregnancy", "maoi-use"))
    created = (await intake.post("/QuestionnaireResponse", json=body)).json()
    first = await open_issues(intake, patient_id)
    assert sorted(i["code"]["coding"][0]["code"] for i in first) == ["maoi-use", "pregnancy"]
    assert (await episode(intake, patient_id))["status"] == "cancelled"

    amended = {**screening(patient_id, yes=("maoi-use",), status="amended"), "id": created["id"]}
    updated = await intake.put(f"/QuestionnaireResponse/{created['id']}", json=amended)
    assert updated.status_code == 200, updated.text
    now = await open_issues(intake, patient_id)
    assert [i["code"]["coding"][0]["code"] for i in now] == ["maoi-use"]
    # The superseded issues are kept, cancelled, not deleted.
    cancelled = await search(intake, "/DetectedIssue", patient=patient_id, status="cancelled")
    assert {i["id"] for i in cancelled} == {i["id"] for i in first}
    found = await episode(intake, patient_id)
    assert found["status"] == "onhold"
    history = found["statusHistory"]
    assert [h["status"] for h in history] == ["cancelled", "onhold"]
    assert history[0]["period"]["end"] == history[1]["period"]["start"]


async def test_missing_answers_are_named(intake: httpx.AsyncClient):
    patient_id = await new_patient(intake)
    body = screening(patient_id, leave_out=("pregnancy", "systolic-bp"))
    refused = await intake.post("/QuestionnaireResponse", json=body)
    assert refused.status_code == 422, refused.text
    text = refused.json()["issue"][0]["diagnostics"]
    assert "pregnancy" in text and "systolic-bp" in text
    # An unfinished response may leave items out.
    partial = {**body, "status": "in-progress"}
    assert (await intake.post("/QuestionnaireResponse", json=partial)).status_code == 201
    assert await search(intake, "/EpisodeOfCare", patient=patient_id) == []


@pytest.mark.parametrize(
    ("changes", "item"),
    [
        ({"bp": (45, 30)}, "systolic-bp"),
        ({"bp": (310, 80)}, "systolic-bp"),
        ({"bp": (120, 120)}, "diastolic-bp"),
        ({"weight": 19}, "body-weight"),
        ({"weight": 401}, "body-weight"),
    ],
)
async def test_implausible_values_are_refused_naming_the_item(
    intake: httpx.AsyncClient, changes: dict, item: str
):
    patient_id = await new_patient(intake)
    refused = await intake.post("/QuestionnaireResponse", json=screening(patient_id, **changes))
    assert refused.status_code == 422, refused.text
    assert item in refused.json()["issue"][0]["diagnostics"]


async def test_unknown_questionnaire_version_or_patient_is_refused(intake: httpx.AsyncClient):
    patient_id = await new_patient(intake)
    unknown_version = await intake.post(
        "/QuestionnaireResponse", json=screening(patient_id, version="99")
    )
    assert unknown_version.status_code == 422, unknown_version.text
    unknown_url = {**screening(patient_id), "questionnaire": "https://elsewhere.example/q|1"}
    assert (await intake.post("/QuestionnaireResponse", json=unknown_url)).status_code == 422
    no_patient = await intake.post("/QuestionnaireResponse", json=screening("nobody"))
    assert no_patient.status_code == 422, no_patient.text
    assert "nobody" in no_patient.json()["issue"][0]["diagnostics"]


@BACKENDS
async def test_a_failed_evaluation_writes_nothing(intake: httpx.AsyncClient):
    """A write that fails after the rule wrote issues and the episode leaves none behind."""
    patient_id = await new_patient(intake)
    body = screening(patient_id, yes=("pregnancy",))
    # `If-Match` on a create-by-PUT of an unknown id fails after the rules ran.
    refused = await intake.put(
        "/QuestionnaireResponse/qr-new",
        json={**body, "id": "qr-new"},
        headers={"If-Match": 'W/"3"'},
    )
    assert refused.status_code == 412, refused.text
    assert await search(intake, "/DetectedIssue", patient=patient_id) == []
    assert await search(intake, "/EpisodeOfCare", patient=patient_id) == []
    assert (await intake.get("/QuestionnaireResponse/qr-new")).status_code == 404


async def test_episode_status_is_not_settable_by_clients(intake: httpx.AsyncClient):
    patient_id = await new_patient(intake)
    await intake.post("/QuestionnaireResponse", json=screening(patient_id, yes=("maoi-use",)))
    found = await episode(intake, patient_id)
    for status in ("active", "waitlist"):
        changed = {**found, "status": status}
        refused = await intake.put(f"/EpisodeOfCare/{found['id']}", json=changed)
        assert refused.status_code == 422, refused.text
        assert refused.json()["issue"][0]["expression"] == ["EpisodeOfCare.status"]
    direct = {
        "resourceType": "EpisodeOfCare",
        "status": "active",
        "patient": {"reference": f"Patient/{patient_id}"},
    }
    assert (await intake.post("/EpisodeOfCare", json=direct)).status_code == 422
    # Ending it needs a clinician.
    ended = {**found, "status": "finished"}
    anonymous = await intake.put(f"/EpisodeOfCare/{found['id']}", json=ended)
    assert anonymous.status_code == 403, anonymous.text
    clinician = bearer(user="Practitioner/dr-1")
    done = await intake.put(f"/EpisodeOfCare/{found['id']}", json=ended, headers=clinician)
    assert done.status_code == 200, done.text


async def test_a_referral_opens_a_planned_episode(intake: httpx.AsyncClient):
    patient_id = await new_patient(intake)
    org = await intake.post(
        "/Organization", json={"resourceType": "Organization", "name": "Riverside Practice"}
    )
    assert org.status_code == 201
    referral = {
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "subject": {"reference": f"Patient/{patient_id}"},
        "requester": {"reference": f"Organization/{org.json()['id']}"},
    }
    created = await intake.post("/ServiceRequest", json=referral)
    assert created.status_code == 201, created.text
    assert len(await search(intake, "/ServiceRequest", patient=patient_id, status="active")) == 1
    assert len(await search(intake, "/Organization", name="riverside")) == 1
    # Referred but unscreened: planned, naming the referral; screening then moves it on.
    planned = await episode(intake, patient_id)
    assert planned["status"] == "planned"
    assert planned["referralRequest"] == [{"reference": f"ServiceRequest/{created.json()['id']}"}]
    assert (await intake.post("/ServiceRequest", json=referral)).status_code == 201
    await intake.post("/QuestionnaireResponse", json=screening(patient_id))
    screened = await episode(intake, patient_id)
    assert screened["id"] == planned["id"]
    assert [h["status"] for h in screened["statusHistory"]] == ["planned", "waitlist"]
    assert URL.endswith("ketamine-emdr-screening")


def _answer(body: dict, link: str, answer: dict) -> dict:
    """`body` with the answer of item `link` replaced."""
    items = [
        {**item, "answer": [answer]} if item["linkId"] == link else item for item in body["item"]
    ]
    return {**body, "item": items}


@pytest.mark.parametrize(
    ("link", "answer"),
    [
        ("pregnancy", {"valueString": "true"}),
        (
            "pregnancy",
            {
                "valueCoding": {
                    "system": "http://terminology.hl7.org/CodeSystem/v2-0136",
                    "code": "Y",
                }
            },
        ),
        ("systolic-bp", {"valueString": "180"}),
        (
            "body-weight",
            {
                "valueQuantity": {
                    "value": 150,
                    "system": "http://unitsofmeasure.org",
                    "code": "[lb_av]",
                }
            },
        ),
        ("diastolic-bp", {"valueQuantity": {"value": 80, "unit": "mmHg"}}),
    ],
)
async def test_an_answer_of_the_wrong_type_or_unit_is_refused_not_misread(
    intake: httpx.AsyncClient, link: str, answer: dict
):
    """A careless EHR's `"true"` for a contraindication must not read as "no", and text where
    a number belongs must not fail the server."""
    patient_id = await new_patient(intake)
    body = _answer(screening(patient_id), link, answer)
    refused = await intake.post("/QuestionnaireResponse", json=body)
    assert refused.status_code == 422, refused.text
    issue = refused.json()["issue"][0]
    assert link in issue["diagnostics"]
    assert issue["expression"] == [f"QuestionnaireResponse.item.where(linkId='{link}').answer[0]"]
    assert await search(intake, "/EpisodeOfCare", patient=patient_id) == []


async def test_an_item_the_questionnaire_does_not_have_is_refused(intake: httpx.AsyncClient):
    patient_id = await new_patient(intake)
    body = screening(patient_id)
    body["item"].append({"linkId": "pregnant", "answer": [{"valueBoolean": True}]})
    refused = await intake.post("/QuestionnaireResponse", json=body)
    assert refused.status_code == 422, refused.text
    assert "pregnant" in refused.json()["issue"][0]["diagnostics"]


async def test_a_conditional_put_that_creates_a_response_is_evaluated(intake: httpx.AsyncClient):
    patient_id = await new_patient(intake)
    body = {
        **screening(patient_id, yes=("pregnancy",)),
        "identifier": {"system": "urn:x", "value": "q1"},
    }
    created = await intake.put("/QuestionnaireResponse?identifier=urn:x|q1", json=body)
    assert created.status_code == 201, created.text
    (found,) = await search(intake, "/EpisodeOfCare", patient=patient_id)
    assert found["status"] == "cancelled"
    issue = (await open_issues(intake, patient_id))[0]
    assert issue["implicated"] == [{"reference": f"QuestionnaireResponse/{created.json()['id']}"}]
