"""Canonical resources: `uri` search on `url`, `version`, and `url|version` references."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from shared.app import create_service_app
from shared.fhir.catalogue import resource
from shared.fhir.registry import Registry
from tests.conftest import BACKENDS, make_settings
from tests.kafka_support import serving

URL = "https://fhir.example.org/kemdr/Questionnaire/screening"


@pytest.fixture
async def canon(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    registry = Registry("intake")
    for res_type in ("Questionnaire", "QuestionnaireResponse", "Patient"):
        registry.add(resource(res_type, owner="intake"))
    app = create_service_app(make_settings("intake", database_url), registry)
    async with serving(app) as client:
        yield client


def _questionnaire(url: str, version: str) -> dict:
    return {
        "resourceType": "Questionnaire",
        "url": url,
        "version": version,
        "status": "active",
        "name": "Screening",
    }


def _response(questionnaire: str) -> dict:
    return {
        "resourceType": "QuestionnaireResponse",
        "questionnaire": questionnaire,
        "status": "completed",
        "subject": {"reference": "Patient/p1"},
    }


async def _ids(client: httpx.AsyncClient, path: str, **params: str) -> list[str]:
    response = await client.get(path, params=params)
    assert response.status_code == 200, response.text
    return sorted(e["resource"]["id"] for e in response.json().get("entry", []))


@BACKENDS
async def test_url_and_version_find_a_canonical_resource(canon: httpx.AsyncClient):
    ids = {}
    for url, version in ((URL, "1"), (URL, "2"), (f"{URL}-v2", "1")):
        created = await canon.post("/Questionnaire", json=_questionnaire(url, version))
        assert created.status_code == 201, created.text
        ids[(url, version)] = created.json()["id"]
    # A uri matches exactly: the longer url is not a match for the shorter.
    assert await _ids(canon, "/Questionnaire", url=URL) == sorted(
        [ids[(URL, "1")], ids[(URL, "2")]]
    )
    assert await _ids(canon, "/Questionnaire", url=URL, version="2") == [ids[(URL, "2")]]
    assert await _ids(canon, "/Questionnaire", **{"url:below": URL}) == sorted(ids.values())
    assert await _ids(canon, "/Questionnaire", url=URL.upper()) == []
    assert await _ids(canon, "/Questionnaire", url="https://fhir.example.org/%") == []


@BACKENDS
async def test_a_reference_to_a_canonical_matches_with_or_without_its_version(
    canon: httpx.AsyncClient,
):
    v1 = (await canon.post("/QuestionnaireResponse", json=_response(f"{URL}|1"))).json()["id"]
    v2 = (await canon.post("/QuestionnaireResponse", json=_response(f"{URL}|2"))).json()["id"]
    bare = (await canon.post("/QuestionnaireResponse", json=_response(URL))).json()["id"]
    other = (await canon.post("/QuestionnaireResponse", json=_response(f"{URL}-v2|1"))).json()
    path = "/QuestionnaireResponse"
    assert await _ids(canon, path, questionnaire=f"{URL}|1") == [v1]
    assert await _ids(canon, path, questionnaire=URL) == sorted([v1, v2, bare])
    assert other["id"] not in await _ids(canon, path, questionnaire=URL)
    # Ordinary references on the same type still work.
    assert len(await _ids(canon, path, patient="p1")) == 4
