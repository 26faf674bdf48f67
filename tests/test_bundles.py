"""Transaction and batch Bundles posted to the base (R4 http.html#transaction, bundle.html)."""

from __future__ import annotations

import asyncio
import base64
import functools
import json
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from shared.db.models import OutboxRow
from tests.conftest import BACKENDS
from tests.factories import FHIR_JSON, appointment, medication_administration, observation
from tests.fhir_asserts import assert_outcome
from tests.measures_support import known_patient
from tests.outbox_rows import RESOURCE_EVENTS

pytestmark = BACKENDS

LOINC = "http://loinc.org"
PHQ9_PANEL, PHQ9_TOTAL, GAD7_TOTAL, PCL5_TOTAL = "44249-1", "44261-6", "70274-6", "89204-2"
TRIAL = "urn:trial:kemdr:obs"
BASE = "http://testserver/fhir"


def _bundle(entries: list[dict[str, Any]], kind: str = "transaction") -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": entries}


def _post(resource: dict[str, Any], full_url: str | None = None, **request: str) -> dict:
    entry: dict[str, Any] = {
        "resource": resource,
        "request": {"method": "POST", "url": resource["resourceType"], **request},
    }
    if full_url:
        entry["fullUrl"] = full_url
    return entry


def _put(resource: dict[str, Any], url: str, **request: str) -> dict:
    return {"resource": resource, "request": {"method": "PUT", "url": url, **request}}


def _patch(url: str, operations: list[dict[str, Any]], **request: str) -> dict:
    binary = {
        "resourceType": "Binary",
        "contentType": "application/json-patch+json",
        "data": base64.b64encode(json.dumps(operations).encode()).decode(),
    }
    return {"resource": binary, "request": {"method": "PATCH", "url": url, **request}}


@pytest.fixture
def outcomes(outcomes: httpx.AsyncClient) -> httpx.AsyncClient:
    """Outcomes knowing the patient of these Observations (pt-1), as intake's event would."""
    known_patient(outcomes, "pt-1")
    return outcomes


def _request(method: str, url: str) -> dict:
    return {"request": {"method": method, "url": url}}


def _obs(code: str, value: float = 12, **extra: Any) -> dict[str, Any]:
    return observation(patient_id="pt-1", code=code, value=value, **extra)


def _identified(code: str, value: str, **extra: Any) -> dict[str, Any]:
    return _obs(code, identifier=[{"system": TRIAL, "value": value}], **extra)


async def _send(client: httpx.AsyncClient, bundle: Any, **headers: str) -> httpx.Response:
    return await client.post("/", json=bundle, headers={**FHIR_JSON, **headers})


async def _ok(client: httpx.AsyncClient, bundle: Any, **headers: str) -> list[dict[str, Any]]:
    response = await _send(client, bundle, **headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["resourceType"] == "Bundle"
    assert body["type"] == f"{bundle['type']}-response"
    assert len(body["entry"]) == len(bundle["entry"])
    return body["entry"]


# Bundle failures must also name the entry at fault.
_failure = functools.partial(assert_outcome, expression=True)


def _id_of(entry: dict[str, Any]) -> str:
    return entry["response"]["location"].split("/")[1]


async def _total(client: httpx.AsyncClient, path: str, **params: str) -> int:
    response = await client.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()["total"]


async def _stored_counts(client: httpx.AsyncClient) -> tuple[int, int]:
    """(current resources, history rows) of the types written here (not the replicated
    Patient the Observations need)."""
    found = versions = 0
    for res_type in ("Observation", "Appointment", "MedicationAdministration"):
        response = await client.get(f"/{res_type}", params={"_summary": "count"})
        if response.status_code == 200:
            found += response.json()["total"]
            versions += await _total(client, f"/{res_type}/_history")
    return found, versions


def _outbox_subjects(client: httpx.AsyncClient) -> list[tuple[str, str]]:
    """(subject, versionid) of every event in the service's outbox."""
    database = client._transport.app.state.fhir.database  # type: ignore[attr-defined]
    with database.read() as session:
        payloads = session.execute(select(OutboxRow.payload).where(RESOURCE_EVENTS)).scalars().all()
    return [(e["subject"], e["versionid"]) for e in map(json.loads, payloads)]


# ---- transactions ------------------------------------------------------------------------
async def test_transaction_resolves_urn_uuid_references(outcomes: httpx.AsyncClient):
    panel, phq9, gad7 = (f"urn:uuid:{n}1a2b3c4-0000-4000-8000-00000000000{n}" for n in (1, 2, 3))
    bundle = _bundle(
        [
            _post(
                _obs(PHQ9_PANEL, hasMember=[{"reference": phq9}, {"reference": gad7}]),
                panel,
            ),
            _post(_obs(PHQ9_TOTAL, 14), phq9),
            _post(_obs(GAD7_TOTAL, 9, derivedFrom=[{"reference": phq9}]), gad7),
        ]
    )
    entries = await _ok(outcomes, bundle)
    ids = [_id_of(e) for e in entries]
    assert len(set(ids)) == 3
    for entry, oid in zip(entries, ids, strict=True):
        response = entry["response"]
        assert response["status"] == "201 Created"
        assert response["location"] == f"Observation/{oid}/_history/1"
        assert response["etag"] == 'W/"1"'
        assert response["lastModified"].endswith("Z")
        assert entry["fullUrl"] == f"{BASE}/Observation/{oid}"
        assert entry["resource"]["id"] == oid
    panel_id, phq9_id, gad7_id = ids
    assert entries[0]["resource"]["hasMember"] == [
        {"reference": f"Observation/{phq9_id}"},
        {"reference": f"Observation/{gad7_id}"},
    ]
    stored = (await outcomes.get(f"/Observation/{panel_id}")).json()
    assert stored == entries[0]["resource"]
    stored_gad7 = (await outcomes.get(f"/Observation/{gad7_id}")).json()
    assert stored_gad7["derivedFrom"] == [{"reference": f"Observation/{phq9_id}"}]
    # The search index holds the resolved references too.
    members = await outcomes.get("/Observation", params={"has-member": f"Observation/{gad7_id}"})
    assert [e["resource"]["id"] for e in members.json()["entry"]] == [panel_id]
    derived = await outcomes.get("/Observation", params={"derived-from": f"Observation/{phq9_id}"})
    assert [e["resource"]["id"] for e in derived.json()["entry"]] == [gad7_id]


async def test_transaction_processing_order_and_answers_in_request_order(
    outcomes: httpx.AsyncClient,
):
    old = (await outcomes.post("/Observation", json=_obs(PCL5_TOTAL, 40), headers=FHIR_JSON)).json()
    kept = (
        await outcomes.post("/Observation", json=_obs(PHQ9_TOTAL, 10), headers=FHIR_JSON)
    ).json()
    new_url = "urn:uuid:7f1e2d3c-0000-4000-8000-000000000001"
    by_code = f"Observation?code={LOINC}|{PCL5_TOTAL}"
    bundle = _bundle(
        [
            # Processed last (GET): sees the DELETE and the POST below.
            _request("GET", by_code),
            # Processed third (PUT): may point at what the POST creates.
            _put(
                {
                    **kept,
                    "valueQuantity": {**kept["valueQuantity"], "value": 11},
                    "derivedFrom": [{"reference": new_url}],
                },
                f"Observation/{kept['id']}",
                ifMatch='W/"1"',
            ),
            # Processed second (POST).
            _post(_obs(PCL5_TOTAL, 33), new_url),
            # Processed first (DELETE): if it ran after the POST it would match two and fail.
            _request("DELETE", by_code),
            _request("GET", f"Observation/{kept['id']}"),
        ]
    )
    entries = await _ok(outcomes, bundle)
    assert [e["response"]["status"] for e in entries] == [
        "200 OK",
        "200 OK",
        "201 Created",
        "204 No Content",
        "200 OK",
    ]
    new_id = _id_of(entries[2])
    search = entries[0]["resource"]
    assert search["type"] == "searchset" and search["total"] == 1
    assert search["entry"][0]["resource"]["id"] == new_id
    assert entries[1]["response"]["etag"] == 'W/"2"'
    assert entries[1]["response"]["location"] == f"Observation/{kept['id']}/_history/2"
    assert entries[1]["resource"]["derivedFrom"] == [{"reference": f"Observation/{new_id}"}]
    read = entries[4]
    assert read["resource"]["meta"]["versionId"] == "2"
    assert read["response"]["etag"] == 'W/"2"'
    assert (await outcomes.get(f"/Observation/{old['id']}")).status_code == 410
    assert await _total(outcomes, "/Observation") == 2


async def test_failed_transaction_stores_nothing(outcomes: httpx.AsyncClient):
    app = outcomes._transport.app  # type: ignore[attr-defined]
    calls: list[str] = []
    store = app.state.fhir.store
    recorded = store.outbox

    def record(session: Any, stored: Any) -> None:
        if stored.type != "AuditEvent":  # each write's own record rides along
            calls.append(stored.id)
        recorded(session, stored)

    store.outbox = record
    panel = "urn:uuid:00000000-0000-4000-8000-0000000000aa"
    bundle = _bundle(
        [
            _post(_obs(PHQ9_PANEL, hasMember=[{"reference": "urn:uuid:b"}]), panel),
            _post(_obs(PHQ9_TOTAL), "urn:uuid:b"),
            _post(_obs(GAD7_TOTAL, status="bogus")),
        ]
    )
    issue = _failure(await _send(outcomes, bundle), 422, "code-invalid")
    assert issue["expression"] == ["Bundle.entry[2].resource.status"]
    assert issue["diagnostics"].startswith("Bundle.entry[2]")
    # The listeners (the outbox among them) ran for the two good entries...
    assert len(calls) == 2
    # ...and everything they wrote was rolled back with the resources.
    assert await _stored_counts(outcomes) == (0, 0)
    assert _outbox_subjects(outcomes) == []

    # The same Bundle without the bad entry commits resources and events together.
    entries = await _ok(outcomes, _bundle(bundle["entry"][:2]))
    assert [e["response"]["status"] for e in entries] == ["201 Created"] * 2
    assert await _stored_counts(outcomes) == (2, 2)
    assert sorted(_outbox_subjects(outcomes)) == sorted(
        (f"Observation/{_id_of(e)}", "1") for e in entries
    )


async def test_if_match_and_if_none_exist_inside_a_transaction(outcomes: httpx.AsyncClient):
    existing = (
        await outcomes.post("/Observation", json=_identified(PHQ9_TOTAL, "a"), headers=FHIR_JSON)
    ).json()
    eid = existing["id"]
    changed = {**existing, "status": "amended"}
    assert (await outcomes.put(f"/Observation/{eid}", json=changed, headers=FHIR_JSON)).is_success

    # A stale ifMatch fails the whole transaction, naming the entry.
    stale = _bundle(
        [
            _post(_obs(GAD7_TOTAL)),
            _put({**changed, "status": "corrected"}, f"Observation/{eid}", ifMatch='W/"1"'),
        ]
    )
    issue = _failure(await _send(outcomes, stale), 412, "conflict")
    assert issue["expression"] == ["Bundle.entry[1]"]
    assert issue["diagnostics"].startswith("Bundle.entry[1]: ")
    assert await _stored_counts(outcomes) == (1, 2)
    assert (await outcomes.get(f"/Observation/{eid}")).json()["status"] == "amended"

    # ifNoneExist finds the existing resource; references to its fullUrl point at it.
    member = "urn:uuid:11111111-0000-4000-8000-000000000001"
    bundle = _bundle(
        [
            _post(_obs(PHQ9_PANEL, hasMember=[{"reference": member}])),
            _post(_identified(PHQ9_TOTAL, "a"), member, ifNoneExist=f"identifier={TRIAL}|a"),
            _post(_identified(GAD7_TOTAL, "b"), ifNoneExist=f"identifier={TRIAL}|b"),
            _put({**changed, "status": "corrected"}, f"Observation/{eid}", ifMatch='W/"2"'),
        ]
    )
    entries = await _ok(outcomes, bundle)
    assert [e["response"]["status"] for e in entries] == [
        "201 Created",
        "200 OK",
        "201 Created",
        "200 OK",
    ]
    assert entries[1]["response"]["location"] == f"Observation/{eid}/_history/2"
    assert entries[3]["response"]["etag"] == 'W/"3"'
    assert entries[0]["resource"]["hasMember"] == [{"reference": f"Observation/{eid}"}]
    assert await _total(outcomes, "/Observation") == 3

    # Two matches for ifNoneExist: 412 and nothing stored.
    twin = await outcomes.post("/Observation", json=_identified(GAD7_TOTAL, "b"), headers=FHIR_JSON)
    assert twin.status_code == 201
    ambiguous = _bundle(
        [
            _post(_obs(PCL5_TOTAL)),
            _post(_identified(GAD7_TOTAL, "b"), ifNoneExist=f"identifier={TRIAL}|b"),
        ]
    )
    issue = _failure(await _send(outcomes, ambiguous), 412, "conflict")
    assert issue["expression"] == ["Bundle.entry[1]"]
    assert await _total(outcomes, "/Observation") == 4


async def test_patch_and_get_entries(outcomes: httpx.AsyncClient):
    existing = (
        await outcomes.post("/Observation", json=_obs(PHQ9_TOTAL), headers=FHIR_JSON)
    ).json()
    oid = existing["id"]
    new_url = "urn:uuid:22222222-0000-4000-8000-000000000002"
    ops = [
        {"op": "replace", "path": "/status", "value": "amended"},
        {"op": "add", "path": "/derivedFrom", "value": [{"reference": new_url}]},
    ]
    bundle = _bundle(
        [
            _patch(f"Observation/{oid}", ops, ifMatch='W/"1"'),
            _post(_obs(GAD7_TOTAL), new_url),
            _request("GET", f"Observation/{oid}/_history/1"),
            _request("GET", f"Observation?_id={oid}&status=amended"),
        ]
    )
    entries = await _ok(outcomes, bundle)
    new_id = _id_of(entries[1])
    patched = entries[0]
    assert patched["response"]["status"] == "200 OK"
    assert patched["response"]["etag"] == 'W/"2"'
    assert patched["resource"]["status"] == "amended"
    assert patched["resource"]["derivedFrom"] == [{"reference": f"Observation/{new_id}"}]
    assert entries[2]["resource"]["meta"]["versionId"] == "1"
    assert entries[2]["resource"]["status"] == "final"
    assert "location" not in entries[2]["response"]
    assert entries[3]["resource"]["total"] == 1

    stale = _bundle([_patch(f"Observation/{oid}", ops[:1], ifMatch='W/"1"')])
    assert _failure(await _send(outcomes, stale), 412, "conflict")["expression"] == [
        "Bundle.entry[0]"
    ]
    not_patch = _bundle([{**_patch(f"Observation/{oid}", ops), "resource": {"data": "!!"}}])
    issue = _failure(await _send(outcomes, not_patch), 400, "invalid")
    assert issue["expression"] == ["Bundle.entry[0].resource"]
    garbage = _patch(f"Observation/{oid}", ops)
    garbage["resource"]["data"] = "not base64!"
    issue = _failure(await _send(outcomes, _bundle([garbage])), 400, "invalid")
    assert issue["expression"] == ["Bundle.entry[0].resource.data"]
    bad_value = _patch(f"Observation/{oid}", [{"op": "replace", "path": "/status", "value": "x"}])
    issue = _failure(await _send(outcomes, _bundle([bad_value])), 422, "code-invalid")
    assert issue["expression"] == ["Bundle.entry[0].resource.status"]
    assert (await outcomes.get(f"/Observation/{oid}")).json()["meta"]["versionId"] == "2"


async def test_conditional_entries_in_a_transaction(outcomes: httpx.AsyncClient):
    doomed = (
        await outcomes.post("/Observation", json=_identified(PCL5_TOTAL, "d"), headers=FHIR_JSON)
    ).json()
    target = "urn:uuid:33333333-0000-4000-8000-000000000003"
    bundle = _bundle(
        [
            {
                **_put(_identified(PHQ9_TOTAL, "u"), f"Observation?identifier={TRIAL}|u"),
                "fullUrl": target,
            },
            _post(_obs(PHQ9_PANEL, hasMember=[{"reference": target}])),
            _request("DELETE", f"Observation?identifier={TRIAL}|d"),
        ]
    )
    entries = await _ok(outcomes, bundle)
    assert [e["response"]["status"] for e in entries] == [
        "201 Created",
        "201 Created",
        "204 No Content",
    ]
    created = _id_of(entries[0])
    assert entries[1]["resource"]["hasMember"] == [{"reference": f"Observation/{created}"}]
    assert (await outcomes.get(f"/Observation/{doomed['id']}")).status_code == 410
    # Again: the conditional PUT now updates the same resource, and references follow it.
    again = await _ok(outcomes, _bundle(bundle["entry"][:2]))
    assert again[0]["response"]["status"] == "200 OK"
    assert again[0]["response"]["location"] == f"Observation/{created}/_history/2"
    assert again[1]["resource"]["hasMember"] == [{"reference": f"Observation/{created}"}]


async def test_malformed_bundles_and_entries(outcomes: httpx.AsyncClient):
    collection = _bundle([_post(_obs(PHQ9_TOTAL))], kind="collection")
    assert _failure(await _send(outcomes, collection), 422, "invalid")["expression"] == [
        "Bundle.type"
    ]
    not_bundle = await _send(outcomes, _obs(PHQ9_TOTAL))
    assert _failure(not_bundle, 400, "invalid")["expression"] == ["resourceType"]
    no_request = _bundle([_post(_obs(PHQ9_TOTAL)), {"resource": _obs(PHQ9_TOTAL)}])
    assert _failure(await _send(outcomes, no_request), 400, "invalid")["expression"] == [
        "Bundle.entry[1].request"
    ]
    bad_method = _bundle(
        [{"resource": _obs(GAD7_TOTAL), "request": {"method": "FETCH", "url": "x"}}]
    )
    assert _failure(await _send(outcomes, bad_method), 400, "invalid")["expression"] == [
        "Bundle.entry[0].request.method"
    ]
    bad_etag = _bundle([_put(_obs(GAD7_TOTAL, id="o1"), "Observation/o1", ifMatch="yesterday")])
    assert _failure(await _send(outcomes, bad_etag), 400, "invalid")["expression"] == [
        "Bundle.entry[0].request.ifMatch"
    ]
    # Patient is a read-only replica in outcomes: written only at intake.
    replica = _bundle([_post(_obs(PHQ9_TOTAL)), _post({"resourceType": "Patient"})])
    assert _failure(await _send(outcomes, replica), 405, "not-supported")["expression"] == [
        "Bundle.entry[1]"
    ]
    mismatch = _bundle([{**_post(_obs(PHQ9_TOTAL)), "request": {"method": "POST", "url": "Basic"}}])
    assert _failure(await _send(outcomes, mismatch), 404, "not-found")
    twice = _bundle(
        [
            _put(_obs(PHQ9_TOTAL, id="o1"), "Observation/o1"),
            _request("DELETE", "Observation/o1"),
        ]
    )
    assert _failure(await _send(outcomes, twice), 400, "invalid")["expression"] == [
        "Bundle.entry[1]"
    ]
    bad_condition = _bundle([_post(_obs(PHQ9_TOTAL), ifNoneExist="shoe-size=42")])
    assert _failure(await _send(outcomes, bad_condition), 400, "invalid")["expression"] == [
        "Bundle.entry[0].request.ifNoneExist"
    ]
    history_url = _bundle([_request("GET", "Observation/o1/_history")])
    assert _failure(await _send(outcomes, history_url), 400, "invalid")["expression"] == [
        "Bundle.entry[0].request.url"
    ]
    assert await _stored_counts(outcomes) == (0, 0)
    empty = await _ok(outcomes, _bundle([]))
    assert empty == []


async def test_prefer_return_minimal_or_operation_outcome(outcomes: httpx.AsyncClient):
    entries = await _ok(outcomes, _bundle([_post(_obs(PHQ9_TOTAL))]), Prefer="return=minimal")
    assert "resource" not in entries[0]
    assert entries[0]["response"]["status"] == "201 Created"
    assert entries[0]["response"]["location"].endswith("/_history/1")
    entries = await _ok(
        outcomes, _bundle([_post(_obs(PHQ9_TOTAL))]), Prefer="return=OperationOutcome"
    )
    assert "resource" not in entries[0]
    outcome = entries[0]["response"]["outcome"]
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["severity"] == "information"


async def test_scheduling_transaction_is_atomic_across_types(scheduling: httpx.AsyncClient):
    visit = "urn:uuid:44444444-0000-4000-8000-000000000004"
    dose = {
        **medication_administration("pt-9"),
        "supportingInformation": [{"reference": visit}],
    }
    # A request URL may also be absolute, under this server's base.
    absolute = {
        **_post(dose),
        "request": {"method": "POST", "url": f"{BASE}/MedicationAdministration"},
    }
    entries = await _ok(scheduling, _bundle([_post(appointment("pt-9"), visit), absolute]))
    visit_id = _id_of(entries[0])
    assert entries[1]["resource"]["supportingInformation"] == [
        {"reference": f"Appointment/{visit_id}"}
    ]
    assert await _total(scheduling, "/Appointment", patient="Patient/pt-9") == 1
    assert await _total(scheduling, "/MedicationAdministration", patient="Patient/pt-9") == 1

    bad_dose = {**medication_administration("pt-10"), "status": "given"}
    failed = await _send(
        scheduling, _bundle([_post(appointment("pt-10", "2026-03-04T09:00:00Z")), _post(bad_dose)])
    )
    assert _failure(failed, 422, "code-invalid")["expression"] == [
        "Bundle.entry[1].resource.status"
    ]
    assert await _total(scheduling, "/Appointment", patient="Patient/pt-10") == 0
    assert await _stored_counts(scheduling) == (2, 2)
    assert sorted(_outbox_subjects(scheduling)) == [
        (f"Appointment/{visit_id}", "1"),
        (f"MedicationAdministration/{_id_of(entries[1])}", "1"),
    ]


async def test_parallel_conditional_transactions_create_once(scheduling: httpx.AsyncClient):
    booking = {**appointment("pt-11"), "identifier": [{"system": "urn:booking", "value": "b-1"}]}
    bundle = _bundle(
        [
            _post(booking, "urn:uuid:a", ifNoneExist="identifier=urn:booking|b-1"),
            _put(
                {
                    **medication_administration("pt-11"),
                    "id": "dose-11",
                    "supportingInformation": [{"reference": "urn:uuid:a"}],
                },
                "MedicationAdministration/dose-11",
            ),
        ]
    )
    responses = await asyncio.gather(*(_send(scheduling, bundle) for _ in range(8)))
    assert [r.status_code for r in responses] == [200] * 8, [r.text for r in responses]
    statuses = sorted(r.json()["entry"][0]["response"]["status"] for r in responses)
    assert statuses == ["200 OK"] * 7 + ["201 Created"]
    assert len({r.json()["entry"][0]["response"]["location"] for r in responses}) == 1
    search = (await scheduling.get("/Appointment", params={"identifier": "urn:booking|b-1"})).json()
    assert search["total"] == 1
    dose = (await scheduling.get("/MedicationAdministration/dose-11")).json()
    assert dose["meta"]["versionId"] == "8"
    assert dose["supportingInformation"] == [
        {"reference": f"Appointment/{search['entry'][0]['resource']['id']}"}
    ]


# ---- batches -----------------------------------------------------------------------------
async def test_batch_entries_succeed_or_fail_independently(scheduling: httpx.AsyncClient):
    other = (
        await scheduling.post("/Appointment", json=appointment("pt-2"), headers=FHIR_JSON)
    ).json()
    given = (
        await scheduling.post(
            "/MedicationAdministration", json=medication_administration("pt-2"), headers=FHIR_JSON
        )
    ).json()
    bundle = _bundle(
        [
            # Another day than pt-2's: Practitioner/dr1 is not booked twice at once.
            _post(appointment("pt-1", "2026-03-03T09:00:00Z")),
            _post(medication_administration("pt-1")),
            _post({**medication_administration("pt-1"), "status": "bogus"}),
            _request("GET", "Appointment/no-such-visit"),
            _put({**other, "status": "cancelled"}, f"Appointment/{other['id']}", ifMatch='W/"7"'),
            _request("GET", "Appointment?patient=Patient/pt-1"),
            _request("DELETE", f"MedicationAdministration/{given['id']}"),
            {"request": {"method": "PUT"}},
            _request("GET", "Appointment/no such id"),
            _request("GET", f"Appointment/{other['id']}/_history/99999999999"),
            _put({**other, "id": "bad$id"}, "Appointment/bad$id"),
        ],
        kind="batch",
    )
    entries = await _ok(scheduling, bundle)
    assert [e["response"]["status"] for e in entries] == [
        "201 Created",
        "201 Created",
        "422 Unprocessable Entity",
        "404 Not Found",
        "412 Precondition Failed",
        "200 OK",
        "204 No Content",
        "400 Bad Request",
        "404 Not Found",
        "404 Not Found",
        "400 Bad Request",
    ]
    for index in (2, 3, 4, 7, 8, 9, 10):
        outcome = entries[index]["response"]["outcome"]
        assert outcome["resourceType"] == "OperationOutcome"
        assert outcome["issue"][0]["severity"] == "error"
        assert outcome["issue"][0]["expression"][0].startswith(f"Bundle.entry[{index}]")
        assert "resource" not in entries[index]
    assert entries[2]["response"]["outcome"]["issue"][0]["expression"] == [
        "Bundle.entry[2].resource.status"
    ]
    assert entries[4]["response"]["outcome"]["issue"][0]["code"] == "conflict"
    # Batch entries run in order, so the search sees the appointment made by entry 0.
    search = entries[5]["resource"]
    assert [e["resource"]["id"] for e in search["entry"]] == [_id_of(entries[0])]
    assert await _total(scheduling, "/Appointment", patient="Patient/pt-1") == 1
    assert await _total(scheduling, "/MedicationAdministration", patient="Patient/pt-1") == 1
    assert (await scheduling.get(f"/Appointment/{other['id']}")).json()["status"] == "booked"
    assert (await scheduling.get(f"/MedicationAdministration/{given['id']}")).status_code == 410


async def test_strict_handling_applies_to_search_entries(outcomes: httpx.AsyncClient):
    bundle = _bundle([_request("GET", "Observation?shoe-size=42")], kind="batch")
    lenient = await _ok(outcomes, bundle)
    assert lenient[0]["response"]["status"] == "200 OK"
    assert lenient[0]["resource"]["total"] == 0
    # The processor takes Prefer: handling=strict from the route (see api.py).
    processor = outcomes._transport.app.state.fhir.bundles  # type: ignore[attr-defined]
    strict = processor.process(bundle, BASE, None, strict=True)
    assert strict["entry"][0]["response"]["status"] == "400 Bad Request"
    issue = strict["entry"][0]["response"]["outcome"]["issue"][0]
    assert issue["expression"] == ["Bundle.entry[0].request.url"]
