"""Conditional create, update and delete (R4 http.html#ccreate, #cond-update, #cdelete)."""

from __future__ import annotations

import asyncio
import json

import httpx
from sqlalchemy import select

from shared.db.models import OutboxRow
from tests.conftest import BACKENDS
from tests.factories import FHIR_JSON, patient
from tests.fhir_asserts import assert_outcome
from tests.outbox_rows import RESOURCE_EVENTS

pytestmark = BACKENDS

MRN = "http://hospital.example.org/mrn"


def _with_mrn(value: str, **extra: object) -> dict:
    return patient(identifier=[{"system": MRN, "value": value}], **extra)


def _event_subjects(client: httpx.AsyncClient) -> list[str]:
    database = client._transport.app.state.fhir.database  # type: ignore[attr-defined]
    with database.read() as session:
        payloads = session.execute(select(OutboxRow.payload).where(RESOURCE_EVENTS)).scalars().all()
    return [json.loads(payload)["subject"] for payload in payloads]


async def _total(client: httpx.AsyncClient, res_type: str, **params: str) -> int:
    response = await client.get(f"/{res_type}", params=params)
    assert response.status_code == 200, response.text
    return response.json()["total"]


async def test_conditional_create_zero_one_and_many_matches(intake: httpx.AsyncClient):
    condition = {"If-None-Exist": f"identifier={MRN}|100"}
    first = await intake.post("/Patient", json=_with_mrn("100"), headers={**FHIR_JSON, **condition})
    assert first.status_code == 201, first.text
    pid = first.json()["id"]
    assert first.headers["location"] == f"http://testserver/fhir/Patient/{pid}/_history/1"

    # One match: 200 with the existing resource, untouched by the new body.
    again = await intake.post(
        "/Patient", json=_with_mrn("100", gender="female"), headers={**FHIR_JSON, **condition}
    )
    assert again.status_code == 200, again.text
    assert again.json() == first.json()
    assert again.headers["etag"] == 'W/"1"'
    # The "Type?query" form of the condition is understood too.
    typed = await intake.post(
        "/Patient",
        json=_with_mrn("100"),
        headers={**FHIR_JSON, "If-None-Exist": f"Patient?identifier={MRN}|100"},
    )
    assert typed.status_code == 200 and typed.json()["id"] == pid

    # Two matches: 412, and nothing is created.
    twin = await intake.post("/Patient", json=_with_mrn("100"), headers=FHIR_JSON)
    assert twin.status_code == 201
    many = await intake.post("/Patient", json=_with_mrn("100"), headers={**FHIR_JSON, **condition})
    issue = assert_outcome(many, 412, "conflict")
    assert "2 Patient" in issue["diagnostics"]
    assert await _total(intake, "Patient", identifier=f"{MRN}|100") == 2
    assert (await intake.get("/Patient/_history")).json()["total"] == 2


async def test_conditional_create_refuses_bad_conditions_and_bodies(intake: httpx.AsyncClient):
    unknown = await intake.post(
        "/Patient", json=_with_mrn("1"), headers={**FHIR_JSON, "If-None-Exist": "shoe-size=42"}
    )
    assert assert_outcome(unknown, 400, "invalid")["expression"] == ["shoe-size"]
    # A condition with no search criterion would match everything.
    empty = await intake.post(
        "/Patient", json=_with_mrn("1"), headers={**FHIR_JSON, "If-None-Exist": "_count=1"}
    )
    assert_outcome(empty, 400, "invalid")
    invalid = await intake.post(
        "/Patient",
        json=_with_mrn("1", gender="bogus"),
        headers={**FHIR_JSON, "If-None-Exist": f"identifier={MRN}|1"},
    )
    assert assert_outcome(invalid, 422, "code-invalid")["expression"] == ["Patient.gender"]
    assert await _total(intake, "Patient") == 0


async def test_eight_parallel_conditional_creates_make_one_resource(intake: httpx.AsyncClient):
    headers = {**FHIR_JSON, "If-None-Exist": f"identifier={MRN}|parallel-1"}
    responses = await asyncio.gather(
        *(intake.post("/Patient", json=_with_mrn("parallel-1"), headers=headers) for _ in range(8))
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 7 + [201], [r.text for r in responses]
    ids = {r.json()["id"] for r in responses}
    assert len(ids) == 1
    assert await _total(intake, "Patient", identifier=f"{MRN}|parallel-1") == 1
    history = (await intake.get("/Patient/_history")).json()
    assert history["total"] == 1
    # The seven that found the resource wrote nothing, so no event either.
    assert _event_subjects(intake) == [f"Patient/{ids.pop()}"]


async def test_conditional_update_creates_updates_or_refuses(intake: httpx.AsyncClient):
    url = f"/Patient?identifier={MRN}|200"
    created = await intake.put(url, json=_with_mrn("200"), headers=FHIR_JSON)
    assert created.status_code == 201, created.text
    pid = created.json()["id"]
    assert created.headers["location"] == f"http://testserver/fhir/Patient/{pid}/_history/1"

    updated = await intake.put(url, json=_with_mrn("200", gender="female"), headers=FHIR_JSON)
    assert updated.status_code == 200, updated.text
    assert updated.json()["id"] == pid
    assert updated.json()["gender"] == "female"
    assert updated.headers["etag"] == 'W/"2"'

    # The body may name the matched id, but no other.
    same_id = await intake.put(url, json=_with_mrn("200", id=pid), headers=FHIR_JSON)
    assert same_id.status_code == 200 and same_id.headers["etag"] == 'W/"3"'
    other_id = await intake.put(url, json=_with_mrn("200", id="someone-else"), headers=FHIR_JSON)
    assert assert_outcome(other_id, 400, "invalid")["expression"] == ["Patient.id"]

    # If-Match is honoured on the matched resource.
    stale = await intake.put(url, json=_with_mrn("200"), headers={**FHIR_JSON, "If-Match": 'W/"1"'})
    assert_outcome(stale, 412, "conflict")
    current = await intake.put(
        url, json=_with_mrn("200", gender="other"), headers={**FHIR_JSON, "If-Match": 'W/"3"'}
    )
    assert current.status_code == 200 and current.headers["etag"] == 'W/"4"'

    # Two matches: 412, and neither resource changes.
    twin = await intake.post("/Patient", json=_with_mrn("200"), headers=FHIR_JSON)
    many = await intake.put(url, json=_with_mrn("200", gender="male"), headers=FHIR_JSON)
    assert_outcome(many, 412, "conflict")
    assert (await intake.get(f"/Patient/{pid}")).json()["meta"]["versionId"] == "4"
    assert (await intake.get(f"/Patient/{pid}")).json()["gender"] == "other"
    assert (await intake.get(f"/Patient/{twin.json()['id']}")).json()["meta"]["versionId"] == "1"


async def test_conditional_update_without_match_uses_the_body_id(intake: httpx.AsyncClient):
    response = await intake.put(
        f"/Patient?identifier={MRN}|300", json=_with_mrn("300", id="mrn-300"), headers=FHIR_JSON
    )
    assert response.status_code == 201, response.text
    assert response.json()["id"] == "mrn-300"
    assert response.headers["location"].endswith("/Patient/mrn-300/_history/1")
    invalid = await intake.put(
        f"/Patient?identifier={MRN}|301", json=_with_mrn("301", gender="bogus"), headers=FHIR_JSON
    )
    assert invalid.status_code == 422
    assert await _total(intake, "Patient") == 1
    no_criteria = await intake.put("/Patient?_count=5", json=_with_mrn("302"), headers=FHIR_JSON)
    assert_outcome(no_criteria, 400, "invalid")
    assert await _total(intake, "Patient") == 1


async def test_conditional_delete(intake: httpx.AsyncClient):
    target = (await intake.post("/Patient", json=_with_mrn("400"), headers=FHIR_JSON)).json()
    bystander = (await intake.post("/Patient", json=_with_mrn("401"), headers=FHIR_JSON)).json()

    deleted = await intake.delete("/Patient", params={"identifier": f"{MRN}|400"})
    assert deleted.status_code == 204, deleted.text
    assert (await intake.get(f"/Patient/{target['id']}")).status_code == 410
    history = (await intake.get(f"/Patient/{target['id']}/_history")).json()
    assert [e["request"]["method"] for e in history["entry"]] == ["DELETE", "POST"]
    # No match any more: harmless, and nothing else is touched.
    again = await intake.delete("/Patient", params={"identifier": f"{MRN}|400"})
    assert again.status_code == 204
    assert (await intake.get(f"/Patient/{bystander['id']}")).json()["meta"]["versionId"] == "1"

    # Several matches: 412 (conditionalDelete is "single"), and both survive.
    await intake.post("/Patient", json=_with_mrn("401"), headers=FHIR_JSON)
    many = await intake.delete("/Patient", params={"identifier": f"{MRN}|401"})
    assert_outcome(many, 412, "conflict")
    assert await _total(intake, "Patient", identifier=f"{MRN}|401") == 2
    unknown = await intake.delete("/Patient", params={"shoe-size": "42"})
    assert_outcome(unknown, 400, "invalid")
    assert await _total(intake, "Patient") == 2
