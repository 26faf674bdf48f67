"""Intake serves the contraindication CodeSystem it publishes: readable and searchable with a
CodeSystem scope, never written by clients, its version the rule table's."""

from __future__ import annotations

import asyncio
import dataclasses

import httpx
import pytest

from services.intake.app import create_app
from services.intake.screening import publish
from services.intake.screening.protocol import rule_table
from tests.auth_support import bearer
from tests.conftest import BACKENDS, make_settings
from tests.fhir_asserts import assert_outcome
from tests.kafka_support import FHIR_JSON, serving
from tests.screening_support import BASE, KEYS, SYSTEM, new_patient, open_issues, screening

READER = bearer(scope="system/CodeSystem.rs")
PCL5_SYSTEM = f"{BASE}/CodeSystem/pcl-5-response"


async def _found(client: httpx.AsyncClient, **params: str) -> list[dict]:
    response = await client.get("/CodeSystem", params=params, headers=READER)
    assert response.status_code == 200, response.text
    return [entry["resource"] for entry in response.json().get("entry", [])]


@BACKENDS
async def test_the_contraindication_code_system_is_served(database_url: str):
    app = create_app(make_settings("intake", database_url))
    async with serving(app) as client:
        version = rule_table().version
        for params in (
            {"url": SYSTEM},
            {"system": SYSTEM},
            {"url": SYSTEM, "version": version},
            {"name": "KemdrContraindication"},
            {"status": "active", "code": "maoi-use"},
            {"content-mode": "complete", "url": SYSTEM},
        ):
            found = await _found(client, **params)
            assert [(c["url"], c["version"]) for c in found] == [(SYSTEM, version)], params
        assert await _found(client, url=SYSTEM, version=f"{version}-other") == []
        assert await _found(client, code="no-such-rule") == []
        code_system = found[0]
        assert [c["code"] for c in code_system["concept"]] == KEYS
        read = await client.get(f"/CodeSystem/{code_system['id']}", headers=READER)
        assert read.status_code == 200 and read.json() == code_system

        # Another token's scopes do not reach it.
        other = bearer(scope="system/Patient.rs")
        assert_outcome(await client.get("/CodeSystem", headers=other), 403, "forbidden")

        # What a DetectedIssue codes is found at the CodeSystem it names, at its version.
        patient_id = await new_patient(client)
        created = await client.post(
            "/QuestionnaireResponse", json=screening(patient_id, yes=("maoi-use",))
        )
        assert created.status_code == 201, created.text
        (issue,) = await open_issues(client, patient_id)
        coding = issue["code"]["coding"][0]
        assert coding["system"] == SYSTEM
        assert await _found(client, url=coding["system"], version=coding["version"]) == [
            code_system
        ]
        # The PCL-5 answers' local codes are served too.
        (answers,) = await _found(client, url=PCL5_SYSTEM)
        assert [c["code"] for c in answers["concept"]] == [
            "not-at-all",
            "a-little-bit",
            "moderately",
            "quite-a-bit",
            "extremely",
        ]
    # A second start publishes nothing new.
    async with serving(create_app(make_settings("intake", database_url))) as client:
        history = await client.get("/CodeSystem/_history", headers=READER)
        assert history.json()["total"] == 2


async def test_clients_cannot_write_a_code_system(database_url: str):
    app = create_app(make_settings("intake", database_url))
    async with serving(app) as client:
        (code_system,) = await _found(client, url=SYSTEM)
        cid = code_system["id"]
        body = {k: v for k, v in code_system.items() if k not in ("id", "meta")}
        attempts = [
            client.post("/CodeSystem", json=body),
            client.put(f"/CodeSystem/{cid}", json={**body, "id": cid}),
            client.put("/CodeSystem", params={"url": SYSTEM}, json=body),
            client.patch(
                f"/CodeSystem/{cid}",
                json=[{"op": "replace", "path": "/status", "value": "retired"}],
                headers={"Content-Type": "application/json-patch+json"},
            ),
            client.delete(f"/CodeSystem/{cid}"),
            client.delete("/CodeSystem", params={"url": SYSTEM}),
        ]
        for response in await asyncio.gather(*attempts):
            assert_outcome(response, 405, "not-supported")
        entry = {"request": {"method": "POST", "url": "CodeSystem"}, "resource": body}
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [entry]}
        assert_outcome(await client.post("", json=bundle, headers=FHIR_JSON), 405, "not-supported")
        unchanged = await client.get(f"/CodeSystem/{cid}", headers=READER)
        assert unchanged.json()["meta"]["versionId"] == "1"

        statement = (await client.get("/metadata")).json()
        (entry,) = [r for r in statement["rest"][0]["resource"] if r["type"] == "CodeSystem"]
        assert {i["code"] for i in entry["interaction"]} == {
            "read",
            "vread",
            "search-type",
            "history-instance",
            "history-type",
        }
        assert entry["updateCreate"] is False and entry["conditionalDelete"] == "not-supported"
        names = {p["name"] for p in entry["searchParam"]}
        assert {"url", "name", "version", "status", "code"} <= names


async def test_the_code_system_version_is_the_rule_tables(
    database_url: str, monkeypatch: pytest.MonkeyPatch
):
    # Not a publisher's counter: the version the DetectedIssue codings carry.
    table = dataclasses.replace(rule_table(), version="2026.3")
    monkeypatch.setattr(publish, "rule_table", lambda: table)
    async with serving(create_app(make_settings("intake", database_url))) as client:
        assert [c["version"] for c in await _found(client, url=SYSTEM)] == ["2026.3"]
