"""Builders for the scheduling tests: practitioners, rooms, schedules and slots."""

from __future__ import annotations

from typing import Any

import httpx

from services.scheduling.session_types import session_type_system
from tests.factories import FHIR_JSON

SESSION_TYPES = session_type_system("https://fhir.example.org/kemdr")
SNOMED = "http://snomed.info/sct"
# SNOMED CT occupations: the roles of the programme's staff.
PSYCHIATRIST = (SNOMED, "80584001", "Psychiatrist")
PSYCHOTHERAPIST = (SNOMED, "224588003", "Psychotherapist")
NURSE = (SNOMED, "106292003", "Nurse")


def concept(system: str, code: str, display: str = "") -> dict[str, Any]:
    coding = {"system": system, "code": code, **({"display": display} if display else {})}
    return {"coding": [coding]}


def session_type(code: str) -> dict[str, Any]:
    return concept(SESSION_TYPES, code)


def schedule(actor: str = "Practitioner/p1", *types: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Schedule",
        "active": True,
        "serviceType": [session_type(code) for code in types or ("emdr",)],
        "actor": [{"reference": actor}],
        **extra,
    }


def slot(schedule_id: str, start: str, end: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Slot",
        "schedule": {"reference": f"Schedule/{schedule_id}"},
        "status": "free",
        "start": start,
        "end": end,
        **extra,
    }


async def post(client: httpx.AsyncClient, body: dict[str, Any]) -> httpx.Response:
    return await client.post(f"/{body['resourceType']}", json=body, headers=FHIR_JSON)


async def created_id(client: httpx.AsyncClient, body: dict[str, Any]) -> str:
    response = await post(client, body)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def expressions(response: httpx.Response) -> list[str]:
    """Every FHIRPath the OperationOutcome names."""
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome", outcome
    return [e for issue in outcome["issue"] for e in issue.get("expression", [])]


def generate(**inputs: Any) -> dict[str, Any]:
    """The Parameters of a `$generate-slots` call (a list value repeats the parameter)."""
    kinds = {
        "start": "valueDate",
        "end": "valueDate",
        "slotMinutes": "valuePositiveInt",
        "weekday": "valueCode",
        "dayStart": "valueTime",
        "dayEnd": "valueTime",
        "status": "valueCode",
    }
    parameter = []
    for name, value in inputs.items():
        for one in value if isinstance(value, list) else [value]:
            parameter.append({"name": name, kinds[name]: one})
    return {"resourceType": "Parameters", "parameter": parameter}


def counts(response: httpx.Response) -> dict[str, int]:
    assert response.status_code == 200, response.text
    return {p["name"]: p["valueInteger"] for p in response.json()["parameter"]}
