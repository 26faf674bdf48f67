"""Enrichers: elements a service derives are stored, validated and carried by the event."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from shared.app import create_service_app
from shared.db.models import OutboxRow
from shared.fhir.catalogue import resource
from shared.fhir.errors import invalid
from shared.fhir.registry import Registry
from shared.fhir.rules import WriteContext
from tests.conftest import BACKENDS, make_settings
from tests.factories import patient
from tests.kafka_support import serving
from tests.outbox_rows import RESOURCE_EVENTS

URL = "https://kemdr.test/StructureDefinition/name-count"
seen_by_rules: list[Any] = []


def remember(context: WriteContext) -> None:
    seen_by_rules.append(context.resource)


def count_names(context: WriteContext) -> dict[str, Any]:
    """Stamps how many names the patient has (replacing whatever a client sent)."""
    resource = context.resource or {}
    if resource.get("gender") == "unknown":
        raise invalid("Not here", ["Patient.gender"])
    others = [e for e in resource.get("extension", []) if e.get("url") != URL]
    stamped = {"url": URL, "valueInteger": len(resource.get("name", []))}
    if resource.get("gender") == "other":
        stamped = {"url": URL, "valueInteger": "many"}  # a bug: not valid FHIR
    return {**resource, "extension": [*others, stamped]}


def sees_the_stamp(context: WriteContext) -> dict[str, Any]:
    """A second enricher sees the first one's result."""
    resource = context.resource or {}
    stamp = next(e for e in resource["extension"] if e["url"] == URL)
    return {**resource, "active": stamp["valueInteger"] > 0}


@pytest.fixture
async def enriched(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    seen_by_rules.clear()
    registry = Registry("intake")
    registry.add(
        resource(
            "Patient",
            owner="intake",
            rules=(remember,),
            enrichers=(count_names, sees_the_stamp),
        )
    )
    app: FastAPI = create_service_app(make_settings("intake", database_url), registry)
    async with serving(app) as client:
        yield client


def _events(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    database = client._transport.app.state.fhir.database  # type: ignore[attr-defined]
    with database.read() as session:
        rows = session.execute(select(OutboxRow).where(RESOURCE_EVENTS).order_by(OutboxRow.pk))
        return [json.loads(row.payload) for row in rows.scalars()]


@BACKENDS
async def test_the_enriched_resource_is_stored_and_carried_by_its_event(
    enriched: httpx.AsyncClient,
):
    body = {**patient(), "extension": [{"url": URL, "valueInteger": 9}]}
    created = await enriched.post("/Patient", json=body)
    assert created.status_code == 201, created.text
    stamp = {"url": URL, "valueInteger": 1}
    assert created.json()["extension"] == [stamp] and created.json()["active"] is True
    read = (await enriched.get(f"/Patient/{created.json()['id']}")).json()
    assert read["extension"] == [stamp]
    assert _events(enriched)[-1]["data"]["extension"] == [stamp]
    # Rules saw what the client sent, not the derived elements.
    assert seen_by_rules[-1]["extension"] == [{"url": URL, "valueInteger": 9}]
    updated = await enriched.put(f"/Patient/{read['id']}", json={**read, "name": read["name"] * 2})
    assert updated.json()["extension"] == [{"url": URL, "valueInteger": 2}]
    assert _events(enriched)[-1]["data"]["extension"] == [{"url": URL, "valueInteger": 2}]


async def test_an_enricher_refuses_and_its_invalid_output_is_refused(
    enriched: httpx.AsyncClient,
):
    refused = await enriched.post("/Patient", json=patient(gender="unknown"))
    assert refused.status_code == 422
    assert refused.json()["issue"][0]["expression"] == ["Patient.gender"]
    invalid_output = await enriched.post("/Patient", json=patient(gender="other"))
    assert invalid_output.status_code == 422, invalid_output.text
    assert "Patient.extension[0]" in invalid_output.json()["issue"][0]["diagnostics"]
    assert (await enriched.get("/Patient")).json()["total"] == 0
    assert _events(enriched) == []
