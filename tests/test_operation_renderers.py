"""Operations that offer renderers answer an Accept (or `_format`) asking for an image with it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.outcomes.charts.negotiation import renderers
from services.outcomes.observations.measures import outcome_measures
from shared.app import create_service_app
from shared.fhir.catalogue import resource
from shared.fhir.errors import FHIRError
from shared.fhir.operations import Operation, OperationCall, OperationParam, OperationResult
from shared.fhir.registry import Registry
from tests.charts_support import patient_outcomes
from tests.conftest import make_settings
from tests.kafka_support import serving

drawn: list[dict[str, Any]] = []


def _outcomes(call: OperationCall) -> OperationResult:
    if call.one("fail"):
        raise FHIRError(422, "asked to fail", code="business-rule", expression=["fail"])
    return OperationResult(patient_outcomes())


def _draw(body: dict[str, Any]) -> bytes:
    drawn.append(body)
    return b"\x89PNG\r\n\x1a\nnot really"


CHARTED = Operation(
    name="charted",
    levels=frozenset({"system"}),
    handler=_outcomes,
    description="Parameters, or their chart",
    inputs=(OperationParam("fail", "boolean"),),
    renderers={**renderers("patient", measures=outcome_measures()), "image/png": _draw},
)
PLAIN = Operation(
    name="plain", levels=frozenset({"system"}), handler=_outcomes, description="JSON only"
)


@pytest.fixture
async def service(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    drawn.clear()
    registry = Registry("outcomes")
    registry.add(resource("Patient", owner="intake"))
    registry.operations.extend([CHARTED, PLAIN])
    app: FastAPI = create_service_app(make_settings("outcomes", database_url), registry)
    async with serving(app) as client:
        yield client


async def test_accept_image_gets_the_drawing_of_the_answer(service: httpx.AsyncClient) -> None:
    response = await service.get("/$charted", headers={"Accept": "image/png, */*;q=0.1"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.headers["vary"] == "Accept"
    assert response.content == b"\x89PNG\r\n\x1a\nnot really"
    # The renderer got exactly what the JSON answer would have been.
    assert drawn == [patient_outcomes()]


async def test_fhir_json_first_or_no_accept_gets_the_parameters(
    service: httpx.AsyncClient,
) -> None:
    for accept in ("application/fhir+json, image/png", "*/*", ""):
        response = await service.get("/$charted", headers={"Accept": accept})
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/fhir+json")
        assert response.headers["vary"] == "Accept"
        assert response.json()["resourceType"] == "Parameters"
    assert drawn == []


async def test_format_overrides_accept(service: httpx.AsyncClient) -> None:
    response = await service.get(
        "/$charted", params={"_format": "svg"}, headers={"Accept": "application/fhir+json"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("image/svg+xml")
    assert b"Patient/p1: outcomes over time" in response.content
    # `_format=json` is a format, not an undeclared input of the operation.
    response = await service.get(
        "/$charted", params={"_format": "json", "fail": "false"}, headers={"Accept": "image/png"}
    )
    assert response.status_code == 200
    assert response.json()["resourceType"] == "Parameters"


async def test_a_refusal_stays_an_operation_outcome(service: httpx.AsyncClient) -> None:
    response = await service.get(
        "/$charted", params={"fail": "true"}, headers={"Accept": "image/png"}
    )
    assert response.status_code == 422
    assert response.json()["issue"][0]["expression"] == ["fail"]
    response = await service.get("/$charted", params={"bogus": "1", "_format": "png"})
    assert response.status_code == 400
    assert drawn == []


async def test_what_is_not_offered_is_not_acceptable(service: httpx.AsyncClient) -> None:
    assert (await service.get("/$charted", headers={"Accept": "text/html"})).status_code == 406
    assert (await service.get("/$charted", params={"_format": "gif"})).status_code == 406
    assert (await service.get("/$plain", headers={"Accept": "image/png"})).status_code == 406
    assert (await service.get("/$plain", params={"_format": "png"})).status_code == 406
    plain = await service.get("/$plain", params={"_format": "json"})
    assert plain.status_code == 200
    assert "vary" not in plain.headers


async def test_the_openapi_document_names_the_image_types(service: httpx.AsyncClient) -> None:
    document = (await service.get("http://testserver/openapi.json")).json()
    operation = document["paths"]["/fhir/$charted"]["get"]
    content = operation["responses"]["200"]["content"]
    assert {"application/fhir+json", "image/png", "image/svg+xml"} <= set(content)
    assert "_format" in [p["name"] for p in operation["parameters"]]
