"""Helpers shared by the search tests: create resources, run searches, read the ids back."""

from __future__ import annotations

from typing import Any

import httpx

from tests.factories import FHIR_JSON


async def create(client: httpx.AsyncClient, body: dict[str, Any]) -> str:
    """POST a resource and return its server-assigned id."""
    response = await client.post(f"/{body['resourceType']}", json=body, headers=FHIR_JSON)
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def search(
    client: httpx.AsyncClient, path: str, params: Any = None, **kwargs: Any
) -> dict[str, Any]:
    """GET a search and return the searchset Bundle (asserting a 200)."""
    response = await client.get(path, params=params, **kwargs)
    assert response.status_code == 200, response.text
    bundle = response.json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    return bundle


def match_ids(bundle: dict[str, Any]) -> list[str]:
    """The ids of the matches, in Bundle order."""
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]


def include_ids(bundle: dict[str, Any]) -> list[str]:
    return sorted(
        e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "include"
    )


async def found(client: httpx.AsyncClient, path: str, params: Any = None) -> list[str]:
    """The sorted ids of the matches (the total agrees with them)."""
    bundle = await search(client, path, params)
    ids = match_ids(bundle)
    assert bundle["total"] == len(ids), bundle
    return sorted(ids)


def link(bundle: dict[str, Any], relation: str) -> str | None:
    for item in bundle.get("link", []):
        if item["relation"] == relation:
            return item["url"]
    return None


async def bad(client: httpx.AsyncClient, path: str, params: Any, expression: str) -> None:
    """The search is refused with a 400 OperationOutcome naming the parameter."""
    response = await client.get(path, params=params)
    assert response.status_code == 400, (params, response.status_code, response.text)
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["severity"] == "error"
    assert outcome["issue"][0]["expression"] == [expression], (params, outcome)
