"""Create, read, vread, update, patch, delete and history, on SQLite and PostgreSQL."""

from __future__ import annotations

import httpx

from tests.conftest import BACKENDS
from tests.factories import FHIR_JSON, patient

pytestmark = BACKENDS


async def _create(client: httpx.AsyncClient, body: dict | None = None) -> httpx.Response:
    response = await client.post("/Patient", json=body or patient(), headers=FHIR_JSON)
    assert response.status_code == 201, response.text
    return response


async def test_create_sets_location_etag_meta_and_ignores_client_id(intake: httpx.AsyncClient):
    response = await _create(intake, patient(id="client-chosen"))
    body = response.json()
    assert body["id"] != "client-chosen"
    assert body["meta"]["versionId"] == "1"
    assert body["meta"]["lastUpdated"].endswith("Z")
    assert response.headers["location"] == (
        f"http://testserver/fhir/Patient/{body['id']}/_history/1"
    )
    assert response.headers["etag"] == 'W/"1"'
    assert "GMT" in response.headers["last-modified"]
    assert response.headers["content-type"].startswith("application/fhir+json")


async def test_read_vread_and_if_none_match(intake: httpx.AsyncClient):
    created = (await _create(intake)).json()
    pid = created["id"]
    read = await intake.get(f"/Patient/{pid}")
    assert read.status_code == 200
    assert read.json() == created
    assert read.headers["etag"] == 'W/"1"'
    not_modified = await intake.get(f"/Patient/{pid}", headers={"If-None-Match": 'W/"1"'})
    assert not_modified.status_code == 304
    version = await intake.get(f"/Patient/{pid}/_history/1")
    assert version.status_code == 200 and version.json()["meta"]["versionId"] == "1"
    missing = await intake.get(f"/Patient/{pid}/_history/9")
    assert missing.status_code == 404
    assert missing.json()["resourceType"] == "OperationOutcome"


async def test_update_with_if_match_and_stale_if_match(intake: httpx.AsyncClient):
    created = (await _create(intake)).json()
    pid = created["id"]
    changed = {**created, "gender": "female"}
    ok = await intake.put(
        f"/Patient/{pid}", json=changed, headers={**FHIR_JSON, "If-Match": 'W/"1"'}
    )
    assert ok.status_code == 200
    assert ok.headers["etag"] == 'W/"2"'
    assert ok.json()["gender"] == "female"
    stale = await intake.put(
        f"/Patient/{pid}", json=changed, headers={**FHIR_JSON, "If-Match": 'W/"1"'}
    )
    assert stale.status_code == 412
    assert stale.json()["issue"][0]["code"] == "conflict"
    assert (await intake.get(f"/Patient/{pid}")).json()["meta"]["versionId"] == "2"


async def test_update_id_mismatch_is_400_and_unknown_id_creates(intake: httpx.AsyncClient):
    mismatch = await intake.put("/Patient/abc", json=patient(id="xyz"), headers=FHIR_JSON)
    assert mismatch.status_code == 400
    assert mismatch.json()["issue"][0]["expression"] == ["Patient.id"]
    created = await intake.put("/Patient/abc", json=patient(id="abc"), headers=FHIR_JSON)
    assert created.status_code == 201
    assert created.headers["location"].endswith("/Patient/abc/_history/1")


async def test_delete_then_read_is_gone_and_second_delete_is_harmless(intake: httpx.AsyncClient):
    pid = (await _create(intake)).json()["id"]
    assert (await intake.delete(f"/Patient/{pid}")).status_code == 204
    gone = await intake.get(f"/Patient/{pid}")
    assert gone.status_code == 410
    assert gone.json()["issue"][0]["code"] == "deleted"
    assert (await intake.delete(f"/Patient/{pid}")).status_code == 204
    assert (await intake.delete("/Patient/never-was")).status_code == 404
    history = (await intake.get(f"/Patient/{pid}/_history")).json()
    assert [e["request"]["method"] for e in history["entry"]] == ["DELETE", "POST"]
    search = (await intake.get("/Patient", params={"_id": pid})).json()
    assert search["total"] == 0


async def test_json_patch_makes_a_new_version(intake: httpx.AsyncClient):
    pid = (await _create(intake)).json()["id"]
    ops = [{"op": "replace", "path": "/gender", "value": "other"}]
    patch_headers = {"Content-Type": "application/json-patch+json", "If-Match": 'W/"1"'}
    patched = await intake.patch(f"/Patient/{pid}", json=ops, headers=patch_headers)
    assert patched.status_code == 200, patched.text
    assert patched.json()["gender"] == "other"
    assert patched.headers["etag"] == 'W/"2"'
    stale = await intake.patch(f"/Patient/{pid}", json=ops, headers=patch_headers)
    assert stale.status_code == 412
    bad = await intake.patch(
        f"/Patient/{pid}",
        json=[{"op": "replace", "path": "/gender", "value": "bogus"}],
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert bad.status_code == 422
    assert bad.json()["issue"][0]["expression"] == ["Patient.gender"]
    wrong_type = await intake.patch(f"/Patient/{pid}", json=ops, headers=FHIR_JSON)
    assert wrong_type.status_code == 415


async def test_prefer_return_variants(intake: httpx.AsyncClient):
    minimal = await intake.post(
        "/Patient", json=patient(), headers={**FHIR_JSON, "Prefer": "return=minimal"}
    )
    assert minimal.status_code == 201 and minimal.content == b""
    assert minimal.headers["location"]
    outcome = await intake.post(
        "/Patient", json=patient(), headers={**FHIR_JSON, "Prefer": "return=OperationOutcome"}
    )
    assert outcome.json()["resourceType"] == "OperationOutcome"
    full = await intake.post(
        "/Patient", json=patient(), headers={**FHIR_JSON, "Prefer": "return=representation"}
    )
    assert full.json()["resourceType"] == "Patient"


async def test_instance_type_and_system_history(intake: httpx.AsyncClient):
    created = (await _create(intake)).json()
    pid = created["id"]
    await intake.put(f"/Patient/{pid}", json={**created, "gender": "female"}, headers=FHIR_JSON)
    await _create(intake)
    instance = (await intake.get(f"/Patient/{pid}/_history")).json()
    assert instance["type"] == "history" and instance["total"] == 2
    assert [e["resource"]["meta"]["versionId"] for e in instance["entry"]] == ["2", "1"]
    assert instance["entry"][0]["request"] == {"method": "PUT", "url": f"Patient/{pid}"}
    type_history = (await intake.get("/Patient/_history")).json()
    assert type_history["total"] == 3
    system = (await intake.get("/_history", params={"_since": "2000-01-01"})).json()
    assert system["total"] == 3
    future = (await intake.get("/_history", params={"_since": "2999-01-01"})).json()
    assert future["total"] == 0
    assert (await intake.get("/Patient/nobody/_history")).status_code == 404


async def test_deleted_resource_can_be_recreated_by_update(intake: httpx.AsyncClient):
    created = (await _create(intake)).json()
    pid = created["id"]
    await intake.delete(f"/Patient/{pid}")
    again = await intake.put(f"/Patient/{pid}", json=created, headers=FHIR_JSON)
    assert again.status_code == 201
    assert again.json()["meta"]["versionId"] == "3"
