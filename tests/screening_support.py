"""Builders for screening tests: a patient at intake and a screening response."""

from __future__ import annotations

from typing import Any

import httpx

from services.intake.screening.protocol import rule_table, screening_url
from tests.factories import patient

BASE = "https://fhir.example.org/kemdr"
URL = screening_url(BASE)
SYSTEM = f"{BASE}/CodeSystem/contraindication"
KEYS = [rule.key for rule in rule_table().rules]


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
) -> dict[str, Any]:
    """A screening response answering every item: `yes` to the keys given, no to the rest."""
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
