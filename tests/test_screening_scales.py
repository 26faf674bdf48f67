"""The PHQ-9 and PCL-5 item groups of the screening Questionnaire: coded items, scored answer
options, optional answers, and choice answers checked against the options."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from services.intake.screening import protocol
from services.intake.screening.protocol import questionnaire_definition
from tests.fhir_asserts import assert_outcome
from tests.screening_support import (
    BASE,
    ORDINAL,
    URL,
    episode,
    new_patient,
    option,
    screening,
    search,
)

LOINC = "http://loinc.org"
PHQ9_ITEMS = [
    "44250-9",
    "44255-8",
    "44259-0",
    "44254-1",
    "44251-7",
    "44258-2",
    "44252-5",
    "44253-3",
    "44260-8",
]
PHQ9_ANSWERS = [
    ("LA6568-5", "Not at all", 0),
    ("LA6569-3", "Several days", 1),
    ("LA6570-1", "More than half the days", 2),
    ("LA6571-9", "Nearly every day", 3),
]
PCL5_ANSWERS = [
    ("not-at-all", "Not at all", 0),
    ("a-little-bit", "A little bit", 1),
    ("moderately", "Moderately", 2),
    ("quite-a-bit", "Quite a bit", 3),
    ("extremely", "Extremely", 4),
]


def _options(item: dict) -> list[tuple[str, str, str, int]]:
    found = []
    for listed in item["answerOption"]:
        coding = listed["valueCoding"]
        (score,) = [e["valueDecimal"] for e in coding["extension"] if e["url"] == ORDINAL]
        found.append((coding["system"], coding["code"], coding["display"], score))
    return found


async def test_the_published_questionnaire_has_the_phq9_and_pcl5_groups(
    intake: httpx.AsyncClient,
):
    patient_id = await new_patient(intake)  # the first response publishes the Questionnaire
    assert (await intake.post("/QuestionnaireResponse", json=screening(patient_id))).is_success
    (published,) = await search(intake, "/Questionnaire", url=URL)
    groups = {item["linkId"]: item for item in published["item"] if item["type"] == "group"}
    assert list(groups) == ["phq-9", "pcl-5"]
    phq9, pcl5 = groups["phq-9"], groups["pcl-5"]
    assert phq9["code"] == [
        {"system": LOINC, "code": "44249-1", "display": "PHQ-9 quick depression assessment panel"}
    ]
    assert pcl5["code"][0]["code"] == "101697-1"
    assert [i["linkId"] for i in phq9["item"]] == [f"phq-9-{n}" for n in range(1, 10)]
    assert [i["linkId"] for i in pcl5["item"]] == [f"pcl-5-{n}" for n in range(1, 21)]
    assert [i["code"] for i in phq9["item"]] == [[{"system": LOINC, "code": c}] for c in PHQ9_ITEMS]
    # PCL-5 item codes are unconfirmed: linkId and text only.
    assert not any("code" in i for i in pcl5["item"])
    for item in phq9["item"]:
        assert _options(item) == [(LOINC, c, d, s) for c, d, s in PHQ9_ANSWERS]
    local = f"{BASE}/CodeSystem/pcl-5-response"
    for item in pcl5["item"]:
        assert _options(item) == [(local, c, d, s) for c, d, s in PCL5_ANSWERS]
    # Scoring is outcomes' matter: no item is required and no total is asked for.
    for item in [*phq9["item"], *pcl5["item"]]:
        assert item["type"] == "choice" and item["text"] and not item.get("required")
    assert not any("total" in i["linkId"] for i in [*phq9["item"], *pcl5["item"]])


async def test_a_screening_with_phq9_and_pcl5_answers_is_accepted(intake: httpx.AsyncClient):
    patient_id = await new_patient(intake)
    phq9 = (3, 2, 1, 0, 0, 1, 2, 3, 0)
    body = screening(patient_id, phq9=phq9, pcl5=tuple(n % 5 for n in range(20)))
    created = await intake.post("/QuestionnaireResponse", json=body)
    assert created.status_code == 201, created.text
    groups = {i["linkId"]: i for i in created.json()["item"] if "item" in i}
    assert groups["phq-9"]["item"][0]["answer"][0]["valueCoding"]["code"] == "LA6571-9"
    assert len(groups["phq-9"]["item"]) == 9 and len(groups["pcl-5"]["item"]) == 20
    assert (await episode(intake, patient_id))["status"] == "waitlist"  # evaluated as before

    # Items left out are a scoring matter, not a refusal.
    partial = screening(patient_id, phq9=(1, None, 2), pcl5=())
    created = await intake.post("/QuestionnaireResponse", json=partial)
    assert created.status_code == 201, created.text


@pytest.mark.parametrize(
    "answer",
    [
        {"valueCoding": {"system": LOINC, "code": "LA9999-9"}},  # not an option
        {"valueCoding": {"code": "LA6570-1"}},  # an option's code, without its system
        {"valueCoding": option("pcl-5", 1, 2)},  # another instrument's option
        {"valueInteger": 2},  # the score instead of the coding
    ],
)
async def test_a_choice_answer_outside_the_options_is_refused(
    intake: httpx.AsyncClient, answer: dict
):
    patient_id = await new_patient(intake)
    body = screening(patient_id, phq9=(0, 0, 0))
    (group,) = [i for i in body["item"] if i["linkId"] == "phq-9"]
    group["item"][2]["answer"] = [answer]
    refused = await intake.post("/QuestionnaireResponse", json=body)
    issue = assert_outcome(refused, 422, "invalid")
    assert "phq-9-3" in issue["diagnostics"]
    assert issue["expression"] == [
        "QuestionnaireResponse.item.where(linkId='phq-9').item.where(linkId='phq-9-3').answer[0]"
    ]
    assert await search(intake, "/QuestionnaireResponse", patient=patient_id) == []


def test_a_linkid_used_twice_fails_at_load(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    definition = questionnaire_definition(BASE)
    definition["item"][-1]["item"][0]["linkId"] = "phq-9-1"  # pcl-5-1 renamed to a PHQ-9 link
    copy = tmp_path / "questionnaire.json"
    copy.write_text(json.dumps(definition))
    monkeypatch.setattr(protocol, "QUESTIONNAIRE_FILE", copy)
    with pytest.raises(ValueError, match="phq-9-1"):
        protocol.questionnaire_definition(BASE)
