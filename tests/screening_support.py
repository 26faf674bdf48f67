"""Builders for screening tests: a patient at intake and a screening response."""

from __future__ import annotations

from functools import cache
from typing import Any

import httpx

from services.intake.screening.protocol import questionnaire_definition, rule_table, screening_url
from tests.factories import patient

BASE = "https://fhir.example.org/kemdr"
URL = screening_url(BASE)
SYSTEM = f"{BASE}/CodeSystem/contraindication"
KEYS = [rule.key for rule in rule_table().rules]
ORDINAL = "http://hl7.org/fhir/StructureDefinition/ordinalValue"
# A score per item (None leaves the item out), in the instruments' item order.
Scores = tuple[int | None, ...]


@cache
def _definition() -> dict[str, Any]:
    return questionnaire_definition(BASE)


def option(group: str, item: int, score: int) -> dict[str, Any]:
    """The answerOption coding of `group`'s item `item` (1-based) scoring `score`."""
    (listed,) = [i for i in _definition()["item"] if i["linkId"] == group]
    options = listed["item"][item - 1]["answerOption"]
    (coding,) = [
        o["valueCoding"]
        for o in options
        if o["valueCoding"]["extension"][0] == {"url": ORDINAL, "valueDecimal": score}
    ]
    return {k: v for k, v in coding.items() if k != "extension"}


def scale(group: str, scores: Scores) -> dict[str, Any]:
    """A response group answering `group`'s items with these scores."""
    answered = [
        {"linkId": f"{group}-{n}", "answer": [{"valueCoding": option(group, n, score)}]}
        for n, score in enumerate(scores, start=1)
        if score is not None
    ]
    return {"linkId": group, "item": answered}


async def new_patient(intake: httpx.AsyncClient) -> str:
    created = await intake.post("/Patient", json=patient())
    assert created.status_code == 201, created.text
    return created.json()["id"]


def screening(
    patient_id: str,
    *,
    yes: tuple[str, ...] = (),
    bp: tuple[float, float] = (120, 80),
    weight: float = 70,
    status: str = "completed",
    version: str = "1",
    leave_out: tuple[str, ...] = (),
    phq9: Scores | None = None,
    pcl5: Scores | None = None,
) -> dict[str, Any]:
    """A screening response answering every required item: `yes` to the keys given, no to the
    rest; the PHQ-9 and PCL-5 groups only when their scores are given."""
    items: list[dict[str, Any]] = [
        {"linkId": key, "answer": [{"valueBoolean": key in yes}]} for key in KEYS
    ]
    for link, value, unit in (
        ("systolic-bp", bp[0], "mm[Hg]"),
        ("diastolic-bp", bp[1], "mm[Hg]"),
        ("body-weight", weight, "kg"),
    ):
        quantity = {"value": value, "unit": unit, "system": "http://unitsofmeasure.org"}
        items.append({"linkId": link, "answer": [{"valueQuantity": {**quantity, "code": unit}}]})
    items.append({"linkId": "current-medicines", "answer": [{"valueString": "sertraline 50 mg"}]})
    if phq9 is not None:
        items.append(scale("phq-9", phq9))
    if pcl5 is not None:
        items.append(scale("pcl-5", pcl5))
    return {
        "resourceType": "QuestionnaireResponse",
        "questionnaire": f"{URL}|{version}",
        "status": status,
        "subject": {"reference": f"Patient/{patient_id}"},
        "authored": "2026-03-01T10:00:00Z",
        "item": [item for item in items if item["linkId"] not in leave_out],
    }


async def search(client: httpx.AsyncClient, path: str, **params: str) -> list[dict[str, Any]]:
    found = await client.get(path, params=params)
    assert found.status_code == 200, found.text
    return [entry["resource"] for entry in found.json().get("entry", [])]


async def open_issues(intake: httpx.AsyncClient, patient_id: str) -> list[dict[str, Any]]:
    return await search(intake, "/DetectedIssue", patient=patient_id, status="final")


async def episode(intake: httpx.AsyncClient, patient_id: str) -> dict[str, Any]:
    episodes = await search(intake, "/EpisodeOfCare", patient=patient_id)
    assert len(episodes) == 1, episodes
    return episodes[0]
