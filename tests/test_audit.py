"""The audit trail: every access to patient data becomes a BALP AuditEvent, durably."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from shared.db.models import AuditSpoolRow, ResourceRow
from shared.fhir.validation import validate_resource
from tests.auth_support import acting_as, bearer, principal
from tests.conftest import BACKENDS, SERVICES, make_settings
from tests.factories import FHIR_JSON, observation, patient
from tests.fhir_asserts import assert_outcome
from tests.kafka_support import eventually, serving
from tests.measures_support import known_patient

pytestmark = BACKENDS
USER = "Practitioner/dr-audit"
CLIENT = "audit-client"


def _app(service: str, database_url: str) -> FastAPI:
    return SERVICES[service][1](make_settings(service, database_url))


def _client(app: FastAPI, *, anonymous: bool = False) -> httpx.AsyncClient:
    """A client calling as CLIENT on behalf of USER (or with no token at all)."""
    headers = {} if anonymous else bearer(user=USER, client_id=CLIENT, sub=CLIENT)
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://testserver/fhir",
        timeout=60,
        headers=headers,
    )


def _count(app: FastAPI, table: Any, *where: Any) -> int:
    with app.state.fhir.database.read() as session:
        return session.execute(select(func.count()).select_from(table).where(*where)).scalar_one()


def _audit_rows(app: FastAPI) -> int:
    return _count(app, ResourceRow, ResourceRow.res_type == "AuditEvent")


async def _events(client: httpx.AsyncClient, app: FastAPI, **params: str) -> list[dict]:
    """The AuditEvents matching `params`, after draining the spool."""
    await asyncio.to_thread(app.state.audit.drain_all)
    response = await client.get("/AuditEvent", params={"_count": "100", **params})
    assert response.status_code == 200, response.text
    return [entry["resource"] for entry in response.json().get("entry", [])]


def _only(events: list[dict]) -> dict:
    assert len(events) == 1, [e["subtype"][0]["code"] for e in events]
    validate_resource(events[0], "AuditEvent")
    return events[0]


def _refs(event: dict, role: str) -> list[str]:
    return [
        e["what"]["reference"] for e in event["entity"] if e.get("role", {}).get("code") == role
    ]


def _who(event: dict) -> set[str]:
    return {a["who"]["identifier"]["value"] for a in event["agent"] if "identifier" in a["who"]}


@pytest.fixture
def app(database_url: str) -> FastAPI:
    return _app("intake", database_url)


@pytest.fixture
async def client(app: FastAPI):
    async with _client(app) as client:
        with acting_as(principal(user=USER, client_id=CLIENT)):
            yield client
    app.state.fhir.database.dispose()


async def _patient(client: httpx.AsyncClient, family: str = "Auditson") -> str:
    created = await client.post("/Patient", json=patient(family))
    assert created.status_code == 201, created.text
    return created.json()["id"]


# ---- one AuditEvent per access --------------------------------------------------------------
async def test_each_interaction_is_recorded_with_who_what_outcome_and_patient(client, app):
    pid = await _patient(client)
    create = _only(await _events(client, app, action="C"))
    assert create["subtype"][0]["code"] == "create" and create["outcome"] == "0"
    assert _who(create) == {CLIENT, "intake"}
    assert _refs(create, "1") == [f"Patient/{pid}"]
    user = next(a for a in create["agent"] if a.get("requestor"))
    assert user["who"]["reference"] == USER
    assert create["agent"][0]["network"]["address"] == "127.0.0.1"

    assert (await client.get(f"/Patient/{pid}")).status_code == 200
    read = _only(await _events(client, app, action="R"))
    assert read["subtype"][0]["code"] == "read" and _refs(read, "1") == [f"Patient/{pid}"]

    assert (await client.get("/Patient", params={"family": "Auditson"})).status_code == 200
    search = _only(await _events(client, app, subtype="search-type"))
    query = next(e for e in search["entity"] if e["role"]["code"] == "24")
    assert base64.b64decode(query["query"]).decode() == "family=Auditson"
    assert search["action"] == "E"

    body = {**patient("Auditson", "Two"), "id": pid}
    assert (await client.put(f"/Patient/{pid}", json=body)).status_code == 200
    update = _only(await _events(client, app, action="U"))
    assert update["entity"][0]["what"]["reference"] == f"Patient/{pid}"

    assert (await client.delete(f"/Patient/{pid}")).status_code in (200, 204)
    delete = _only(await _events(client, app, action="D"))
    assert _refs(delete, "1") == [f"Patient/{pid}"]


async def test_a_read_of_another_type_names_its_patient(database_url: str):
    app = _app("outcomes", database_url)
    async with _client(app) as client:
        known_patient(client, "pt-9")
        with acting_as(principal(client_id=CLIENT)):
            created = await client.post("/Observation", json=observation(patient_id="pt-9"))
            oid = created.json()["id"]
            assert (await client.get(f"/Observation/{oid}")).status_code == 200
            read = _only(await _events(client, app, action="R"))
    app.state.fhir.database.dispose()
    assert _refs(read, "1") == ["Patient/pt-9"]
    assert _refs(read, "4") == [f"Observation/{oid}/_history/1"]


async def test_refused_and_failed_requests_are_recorded(client, app):
    assert (await client.get("/Patient/nobody")).status_code == 404
    missing = _only(await _events(client, app, outcome="4", action="R"))
    assert _refs(missing, "1") == ["Patient/nobody"]
    bad = await client.post("/Patient", json={"resourceType": "Patient", "gender": 7})
    assert bad.status_code in (400, 422)
    refused = _only(await _events(client, app, outcome="4", action="C"))
    assert refused["outcomeDesc"] == f"HTTP {bad.status_code}"


async def test_an_unauthenticated_request_is_recorded_without_a_client(app):
    async with _client(app, anonymous=True) as anonymous:
        assert (await anonymous.get("/Patient/x")).status_code == 401
        with acting_as(principal(client_id=CLIENT)):
            async with _client(app) as reader:
                event = _only(await _events(reader, app, patient="Patient/x"))
    assert event["agent"][0]["who"] == {"display": "unauthenticated caller"}


async def test_reading_the_audit_trail_is_not_recorded(client, app):
    await _patient(client)
    for _ in range(3):
        await _events(client, app)
    assert _count(app, AuditSpoolRow) == 0
    assert _audit_rows(app) == 1


# ---- writes: in the write's transaction -----------------------------------------------------
async def test_a_write_is_audited_before_its_response_without_any_drain(client, app):
    pid = await _patient(client)
    # No drain, no spool: the AuditEvent committed with the Patient.
    assert _count(app, AuditSpoolRow) == 0
    response = await client.get("/AuditEvent", params={"entity": f"Patient/{pid}"})
    assert response.json()["total"] == 1


async def test_a_failed_transaction_leaves_no_audit_of_its_writes(client, app):
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": patient("Rolledback"), "request": {"method": "POST", "url": "Patient"}},
            {"request": {"method": "DELETE", "url": "Patient/never-was"}},
        ],
    }
    response = await client.post("", json=bundle, headers=FHIR_JSON)
    assert response.status_code == 404, response.text
    assert _audit_rows(app) == 0  # the create's AuditEvent rolled back with it
    refused = _only(await _events(client, app))
    assert refused["subtype"][0]["code"] == "transaction" and refused["outcome"] == "4"


async def test_a_write_whose_audit_fails_is_not_committed(client, app, monkeypatch):
    def broken(*_args: Any) -> dict:
        raise RuntimeError("audit record refused")

    monkeypatch.setattr("shared.auth.audit.audit_event", broken)
    response = await client.post("/Patient", json=patient())
    assert response.status_code == 500
    assert response.json()["issue"][0]["code"] == "exception"
    assert _count(app, ResourceRow, ResourceRow.res_type == "Patient") == 0


def test_the_write_hook_runs_inside_the_transaction(app):
    context = app.state.fhir
    with acting_as(principal()), pytest.raises(RuntimeError), context.database.write() as session:
        context.interactions.create(session, "Patient", patient())
        raise RuntimeError("the transaction fails after the write")
    assert _audit_rows(app) == 0
    with acting_as(principal()), context.database.write() as session:
        context.interactions.create(session, "Patient", patient())
    assert _audit_rows(app) == 1


# ---- reads: spooled before the response, drained after --------------------------------------
async def test_spooled_reads_survive_a_crash_and_are_drained_by_the_next_start(database_url):
    crashed = _app("intake", database_url)  # no lifespan: no drainer, as if it died
    async with _client(crashed) as client:
        with acting_as(principal(client_id=CLIENT)):
            pid = await _patient(client)
            for _ in range(3):
                assert (await client.get(f"/Patient/{pid}")).status_code == 200
    assert _count(crashed, AuditSpoolRow) == 3  # each committed before its response
    crashed.state.fhir.database.dispose()

    restarted = _app("intake", database_url)
    async with serving(restarted) as client:
        with acting_as(principal(client_id=CLIENT)):
            await eventually(lambda: _count(restarted, AuditSpoolRow) == 0, what="drained")
            response = await client.get("/AuditEvent", params={"action": "R"})
    assert response.json()["total"] == 3


async def test_on_sqlite_the_drainer_moves_small_batches(database_url: str):
    """SQLite has one writer: a long drain transaction would hold up every request spooling its
    record, so there each transaction moves 20 records; PostgreSQL (rows locked, skipped by
    other drainers) moves 200."""
    quiet = _app("intake", database_url)  # no lifespan: nothing drains behind the test's back
    async with _client(quiet) as client:
        with acting_as(principal(client_id=CLIENT)):
            pid = await _patient(client)
            for _ in range(30):
                assert (await client.get(f"/Patient/{pid}")).status_code == 200
    drainer = quiet.state.audit
    moved = await asyncio.to_thread(drainer.drain_once)
    assert moved == (30 if database_url.startswith("postgresql") else 20)
    assert _count(quiet, AuditSpoolRow) == 30 - moved
    quiet.state.fhir.database.dispose()


async def test_a_spool_that_cannot_be_written_answers_503_not_the_data(client, app, monkeypatch):
    async def broken(_access: Any) -> None:
        raise RuntimeError("spool down")

    pid = await _patient(client)  # builds the middleware stack
    middleware = app.middleware_stack
    while not hasattr(middleware, "spooler"):
        middleware = middleware.app  # type: ignore[union-attr]
    monkeypatch.setattr(middleware.spooler, "put", broken)
    response = await client.get(f"/Patient/{pid}")
    assert_outcome(response, 503, "transient")
    assert response.headers["retry-after"]
    assert pid not in response.text  # the unrecorded read's data never leaves


# ---- search --------------------------------------------------------------------------------
async def test_every_search_parameter_selects_its_events(client, app):
    pid = await _patient(client)
    await client.get(f"/Patient/{pid}")
    await client.get("/Patient/none")
    await _events(client, app)
    cases = {
        "date": ("ge2000-01-01", 3),
        "agent": (f"urn:kemdr:client-id|{CLIENT}", 3),
        "entity": (f"Patient/{pid}", 2),
        "patient": (f"Patient/{pid}", 2),
        "outcome": ("4", 1),
        "type": ("http://dicom.nema.org/resources/ontology/DCM|110110", 3),
        "subtype": ("read", 2),
        "action": ("C", 1),
        "source": ("urn:kemdr:service|intake", 3),
    }
    for name, (value, expected) in cases.items():
        found = await _events(client, app, **{name: value})
        assert len(found) == expected, (name, value, len(found))
    assert await _events(client, app, date="lt2000-01-01") == []


# ---- never written through the API ---------------------------------------------------------
async def test_audit_events_are_never_writable_through_the_api(client, app):
    await _patient(client)
    event = (await _events(client, app))[0]
    aid = event["id"]
    attempts = [
        client.post("/AuditEvent", json=event),
        client.put(f"/AuditEvent/{aid}", json=event),
        client.put("/AuditEvent", params={"action": "C"}, json=event),
        client.patch(
            f"/AuditEvent/{aid}",
            json=[{"op": "replace", "path": "/outcome", "value": "8"}],
            headers={"Content-Type": "application/json-patch+json"},
        ),
        client.delete(f"/AuditEvent/{aid}"),
        client.delete("/AuditEvent", params={"action": "C"}),
    ]
    for response in await asyncio.gather(*attempts):
        assert_outcome(response, 405, "not-supported")
    for method in ("POST", "PUT", "DELETE"):
        url = "AuditEvent" if method == "POST" else f"AuditEvent/{aid}"
        entry: dict[str, Any] = {"request": {"method": method, "url": url}}
        if method != "DELETE":
            entry["resource"] = {k: v for k, v in event.items() if k != "id" or method == "PUT"}
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [entry]}
        response = await client.post("", json=bundle, headers=FHIR_JSON)
        assert_outcome(response, 405, "not-supported")
    unchanged = await client.get(f"/AuditEvent/{aid}")
    assert unchanged.json()["meta"]["versionId"] == "1"


async def test_hostile_paths_are_recorded_without_blocking_the_trail(client, app):
    async with _client(app, anonymous=True) as anonymous:
        for path in ("/Patient/%00", "/Pat%00ient/x", "/Observation?patient=%00"):
            assert (await anonymous.get(path)).status_code == 401
    pid = await _patient(client)
    assert (await client.get(f"/Patient/{pid}")).status_code == 200
    drained = await asyncio.to_thread(app.state.audit.drain_all)
    assert drained >= 4
    assert _count(app, AuditSpoolRow) == 0
    assert app.state.audit.stuck == set()
    assert len(await _events(client, app, patient=f"Patient/{pid}")) == 2


async def test_a_record_that_cannot_be_stored_does_not_hold_up_the_others(client, app):
    pid = await _patient(client)
    with app.state.fhir.database.write() as session:
        session.execute(AuditSpoolRow.__table__.insert().values(record='{"not": "a record"}'))
    assert (await client.get(f"/Patient/{pid}")).status_code == 200
    await asyncio.to_thread(app.state.audit.drain_all)
    assert len(app.state.audit.stuck) == 1  # kept, logged, passed over
    assert _count(app, AuditSpoolRow) == 1
    assert len(await _events(client, app, action="R")) == 1


async def test_reads_inside_a_bundle_that_also_writes_are_recorded(client, app):
    pid = await _patient(client)
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"resource": patient("Other"), "request": {"method": "POST", "url": "Patient"}},
            {"request": {"method": "GET", "url": f"Patient/{pid}"}},
        ],
    }
    assert (await client.post("", json=bundle, headers=FHIR_JSON)).status_code == 200
    batch = _only(await _events(client, app, subtype="transaction"))
    assert f"Patient/{pid}" in _refs(batch, "1")


async def test_a_search_names_the_patients_whose_data_it_returned(database_url: str):
    app = _app("outcomes", database_url)
    async with _client(app) as client:
        for pid in ("pt-1", "pt-2"):
            known_patient(client, pid)
            assert (await client.post("/Observation", json=observation(patient_id=pid))).is_success
        assert (await client.get("/Observation", params={"status": "final"})).status_code == 200
        search = _only(await _events(client, app, subtype="search-type"))
        assert sorted(_refs(search, "1")) == ["Patient/pt-1", "Patient/pt-2"]
        assert (await client.get("/Observation/_history")).status_code == 200
        history = _only(await _events(client, app, subtype="history-type"))
        assert sorted(_refs(history, "1")) == ["Patient/pt-1", "Patient/pt-2"]
    app.state.fhir.database.dispose()


async def test_a_server_error_is_recorded_with_its_caller(client, app, monkeypatch):
    def fails(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(app.state.fhir.interactions, "read", fails)
    assert (await client.get("/Patient/some-id")).status_code == 500
    monkeypatch.undo()
    failed = _only(await _events(client, app, outcome="8"))
    assert CLIENT in _who(failed)
