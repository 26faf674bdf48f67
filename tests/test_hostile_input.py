"""Inputs found by review that once produced a 5xx or unbounded work; each must be a 4xx now."""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from tests.conftest import BACKENDS
from tests.factories import FHIR_JSON, observation, patient
from tests.measures_support import known_patient

pytestmark = BACKENDS


@pytest.fixture
def outcomes(outcomes: httpx.AsyncClient) -> httpx.AsyncClient:
    """Outcomes knowing the patient of these Observations (p1), as intake's event would."""
    known_patient(outcomes, "p1")
    return outcomes


async def test_self_copying_json_patch_stops_at_the_size_limit(outcomes: httpx.AsyncClient):
    created = (
        await outcomes.post(
            "/Observation",
            json=observation(extension=[{"url": "http://x", "valueString": "a"}]),
            headers=FHIR_JSON,
        )
    ).json()
    doubling = [{"op": "copy", "from": "/extension", "path": "/extension/-"}] * 40
    response = await outcomes.patch(
        f"/Observation/{created['id']}",
        json=doubling,
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert response.status_code == 413
    assert (await outcomes.get(f"/Observation/{created['id']}")).json()["meta"]["versionId"] == "1"


async def test_a_failing_batch_entry_does_not_fail_the_batch(outcomes: httpx.AsyncClient):
    created = (await outcomes.post("/Observation", json=observation(), headers=FHIR_JSON)).json()
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"resource": observation(), "request": {"method": "POST", "url": "Observation"}},
            {
                "resource": {"resourceType": "Binary", "data": 1},
                "request": {"method": "PATCH", "url": f"Observation/{created['id']}"},
            },
            {"request": {"method": "GET", "url": "Observation", "ifMatch": 1}},
        ],
    }
    response = await outcomes.post("/", json=bundle, headers=FHIR_JSON)
    assert response.status_code == 200
    statuses = [e["response"]["status"] for e in response.json()["entry"]]
    assert statuses[0].startswith("201")
    assert statuses[1].startswith("400") and statuses[2].startswith("400")
    assert (await outcomes.get("/Observation")).json()["total"] == 2


async def test_deeply_nested_json_is_400(outcomes: httpx.AsyncClient):
    nested: dict = {"url": "http://x", "valueString": "leaf"}
    for _ in range(130):
        nested = {"url": "http://x", "extension": [nested]}
    response = await outcomes.post(
        "/Observation", json=observation(extension=[nested]), headers=FHIR_JSON
    )
    assert response.status_code == 400
    assert "nested" in response.json()["issue"][0]["diagnostics"]
    transaction = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:1",
                "resource": {**observation(), "x": json.loads("[" * 200 + "]" * 200)},
                "request": {"method": "POST", "url": "Observation"},
            }
        ],
    }
    assert (await outcomes.post("/", json=transaction, headers=FHIR_JSON)).status_code == 400


async def test_control_characters_are_422_and_odd_references_are_stored(
    outcomes: httpx.AsyncClient, intake: httpx.AsyncClient
):
    nul = observation()
    nul["code"] = {"coding": [{"system": "s", "code": "a\u0000"}]}
    response = await outcomes.post("/Observation", json=nul, headers=FHIR_JSON)
    assert response.status_code == 422
    assert response.json()["issue"][0]["expression"] == ["Observation.code.coding[0].code"]
    # Not the subject: that must be a Patient outcomes knows.
    odd = observation(
        performer=[{"reference": "A" + "b" * 70 + "/1"}],
        derivedFrom=[{"reference": "1", "type": "http://x/" + "a" * 80}],
    )
    assert (await outcomes.post("/Observation", json=odd, headers=FHIR_JSON)).status_code == 201
    long_id = patient(identifier=[{"system": "urn:x", "value": "v" * 20_000}])
    assert (await intake.post("/Patient", json=long_id, headers=FHIR_JSON)).status_code == 201


async def test_huge_numbers_in_headers_and_searches_are_400(outcomes: httpx.AsyncClient):
    created = (await outcomes.post("/Observation", json=observation(), headers=FHIR_JSON)).json()
    response = await outcomes.put(
        f"/Observation/{created['id']}",
        json=created,
        headers={**FHIR_JSON, "If-Match": 'W/"' + "9" * 5000 + '"'},
    )
    assert response.status_code == 400
    for value in ("1e999999999", "1e-999999999"):
        search = await outcomes.get("/Observation", params={"value-quantity": value})
        assert search.status_code == 400, value


async def test_binary_patch_entry_in_a_transaction_with_bad_data_is_400(
    outcomes: httpx.AsyncClient,
):
    created = (await outcomes.post("/Observation", json=observation(), headers=FHIR_JSON)).json()
    good = base64.b64encode(
        json.dumps([{"op": "replace", "path": "/status", "value": "amended"}]).encode()
    ).decode()
    for data, expected in ((1, "400"), (good, "200")):
        bundle = {
            "resourceType": "Bundle",
            "type": "batch",
            "entry": [
                {
                    "resource": {
                        "resourceType": "Binary",
                        "contentType": "application/json-patch+json",
                        "data": data,
                    },
                    "request": {"method": "PATCH", "url": f"Observation/{created['id']}"},
                }
            ],
        }
        response = await outcomes.post("/", json=bundle, headers=FHIR_JSON)
        assert response.json()["entry"][0]["response"]["status"].startswith(expected)
