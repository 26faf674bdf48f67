"""The seam for domain code: operations, write rules and event reactions, end to end."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from services.scheduling.app import registry as scheduling_registry
from shared.app import create_service_app
from shared.db.models import OutboxRow
from shared.events.envelope import event_from
from shared.fhir.catalogue import resource
from shared.fhir.errors import FHIRError
from shared.fhir.everything import everything_operation
from shared.fhir.operations import Operation, OperationCall, OperationParam, OperationResult
from shared.fhir.registry import Registry
from shared.fhir.rules import WriteContext
from tests.conftest import BACKENDS, make_settings
from tests.factories import FHIR_JSON, appointment, patient
from tests.kafka_support import serving
from tests.outbox_rows import RESOURCE_EVENTS

# ---- a service built for these tests: a rule that refuses, a rule that writes more -------
seen_actions: list[tuple[str, str | None]] = []


def refuse_unnamed(context: WriteContext) -> None:
    seen_actions.append((context.action, context.res_id))
    if context.resource is not None and not context.resource.get("name"):
        raise FHIRError(
            422, "A patient needs a name here", code="business-rule", expression=["Patient.name"]
        )
    previous = context.previous if context.action == "delete" else None
    if previous is not None and previous.resource and previous.resource.get("active") is True:
        raise FHIRError(409, "An active patient cannot be deleted", code="business-rule")


def book_intake_appointment(context: WriteContext) -> None:
    """On create, a further write in the same transaction (with its own event)."""
    resource = context.resource
    if context.action == "create" and resource is not None and resource.get("gender") == "other":
        body = {**appointment(), "description": "intake visit"}
        context.interactions.create(context.session, "Appointment", body)


def no_cancelled_appointments(context: WriteContext) -> None:
    if context.resource is not None and context.resource.get("status") == "entered-in-error":
        raise FHIRError(422, "Not here", code="business-rule", expression=["Appointment.status"])


def _touch(call: OperationCall) -> OperationResult:
    """A writing operation: sets `active` on the patient (a new version, an event)."""
    current = call.interactions.read(call.session, "Patient", call.res_id or "").stored
    assert current is not None
    body = {**current.resource, "active": call.one("active")}
    result = call.interactions.update(call.session, "Patient", current.id, body, if_match=None)
    assert result.stored is not None
    return OperationResult(result.stored.resource or {})


TOUCH = Operation(
    name="touch",
    levels=frozenset({"instance"}),
    handler=_touch,
    description="Set Patient.active",
    methods=frozenset({"POST"}),
    affects_state=True,
    inputs=(OperationParam("active", "boolean", min=1),),
    outputs=(OperationParam("return", "Patient", min=1),),
)


def _ping(call: OperationCall) -> OperationResult:
    return OperationResult(
        {
            "resourceType": "Parameters",
            "parameter": [{"name": "echo", "valueString": call.one("message", "pong")}],
        }
    )


PING = Operation(
    name="ping",
    levels=frozenset({"system"}),
    handler=_ping,
    description="Answers with its input",
    inputs=(OperationParam("message", "string"),),
)


def ruled_registry() -> Registry:
    registry = Registry("intake")
    registry.add(
        resource(
            "Patient",
            owner="intake",
            rules=(refuse_unnamed, book_intake_appointment),
            operations=(everything_operation(), TOUCH),
        )
    )
    registry.add(resource("Appointment", owner="intake", rules=(no_cancelled_appointments,)))
    registry.operations.append(PING)
    return registry


@pytest.fixture
async def ruled(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    seen_actions.clear()
    app: FastAPI = create_service_app(make_settings("intake", database_url), ruled_registry())
    async with serving(app) as client:
        yield client


def _outbox_count(client: httpx.AsyncClient) -> int:
    database = client._transport.app.state.fhir.database  # type: ignore[attr-defined]
    with database.read() as session:
        return session.execute(
            select(func.count()).select_from(OutboxRow).where(RESOURCE_EVENTS)
        ).scalar_one()


def _refused(response: httpx.Response, status: int = 422) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    return body


# ---- write rules ---------------------------------------------------------------------------
@BACKENDS
async def test_a_rule_refuses_every_kind_of_write_and_nothing_is_stored(ruled: httpx.AsyncClient):
    unnamed = {"resourceType": "Patient", "gender": "male"}
    refused = _refused(await ruled.post("/Patient", json=unnamed))
    assert refused["issue"][0]["expression"] == ["Patient.name"]
    assert refused["issue"][0]["code"] == "business-rule"
    _refused(await ruled.put("/Patient/p9", json={**unnamed, "id": "p9"}))
    _refused(await ruled.put("/Patient?identifier=x|1", json=unnamed))
    pid = (await ruled.post("/Patient", json=patient())).json()["id"]
    patch = [{"op": "remove", "path": "/name"}]
    _refused(
        await ruled.patch(
            f"/Patient/{pid}", json=patch, headers={"Content-Type": "application/json-patch+json"}
        )
    )
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": patient(family="Kept"), "request": {"method": "POST", "url": "Patient"}},
            {"resource": unnamed, "request": {"method": "POST", "url": "Patient"}},
        ],
    }
    assert (await ruled.post("", json=bundle)).status_code == 422
    # Only the one valid patient exists, at version 1, with one event.
    found = (await ruled.get("/Patient")).json()
    assert [e["resource"]["id"] for e in found["entry"]] == [pid]
    assert found["entry"][0]["resource"]["meta"]["versionId"] == "1"
    assert _outbox_count(ruled) == 1
    actions = {action for action, _ in seen_actions}
    assert actions == {"create", "update"}


@BACKENDS
async def test_a_rule_sees_the_previous_version_on_delete(ruled: httpx.AsyncClient):
    active = (await ruled.post("/Patient", json=patient(active=True))).json()["id"]
    _refused(await ruled.delete(f"/Patient/{active}"), 409)
    assert (await ruled.get(f"/Patient/{active}")).status_code == 200
    inactive = (await ruled.post("/Patient", json=patient(active=False))).json()["id"]
    assert (await ruled.delete(f"/Patient/{inactive}")).status_code == 204
    assert ("delete", inactive) in seen_actions


@BACKENDS
async def test_a_rule_writes_further_resources_atomically_with_events(ruled: httpx.AsyncClient):
    created = await ruled.post("/Patient", json=patient(gender="other"))
    assert created.status_code == 201, created.text
    booked = (await ruled.get("/Appointment")).json()
    assert booked["total"] == 1
    assert _outbox_count(ruled) == 2  # the patient's event and the appointment's
    # A further write refused by its own rule undoes the whole write.
    before = _outbox_count(ruled)
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": patient(gender="other"), "request": {"method": "POST", "url": "Patient"}},
            {
                "resource": {**appointment(), "status": "entered-in-error"},
                "request": {"method": "POST", "url": "Appointment"},
            },
        ],
    }
    assert (await ruled.post("", json=bundle)).status_code == 422
    assert (await ruled.get("/Appointment")).json()["total"] == 1
    assert _outbox_count(ruled) == before


async def test_rules_never_run_for_replica_writes(database_url: str):
    calls: list[str] = []

    def record(context: WriteContext) -> None:
        calls.append(context.action)
        raise FHIRError(422, "replicas must not see rules", code="business-rule")

    registry = scheduling_registry()
    registry.resources["Patient"] = resource("Patient", owner="intake", rules=(record,))
    app = create_service_app(make_settings("scheduling", database_url), registry)
    event = {
        "id": str(uuid.uuid4()),
        "type": "fhir.Patient.created",
        "subject": "Patient/r1",
        "versionid": "1",
        "time": "2026-11-30T10:00:00.000000Z",
        "data": {**patient(), "id": "r1", "meta": {"versionId": "1"}},
    }
    assert app.state.events.consumer.apply("fhir.Patient", event_from(event))
    assert calls == []


# ---- operations ----------------------------------------------------------------------------
@BACKENDS
async def test_a_writing_operation_runs_in_a_unit_of_work_with_events(ruled: httpx.AsyncClient):
    pid = (await ruled.post("/Patient", json=patient())).json()["id"]
    body = {"resourceType": "Parameters", "parameter": [{"name": "active", "valueBoolean": True}]}
    touched = await ruled.post(f"/Patient/{pid}/$touch", json=body)
    assert touched.status_code == 200, touched.text
    assert touched.json()["active"] is True and touched.json()["meta"]["versionId"] == "2"
    assert _outbox_count(ruled) == 2
    # Writing operations are POST only; inputs are checked against the declaration.
    assert (await ruled.get(f"/Patient/{pid}/$touch")).status_code == 405
    missing = _refused(
        await ruled.post(f"/Patient/{pid}/$touch", json={"resourceType": "Parameters"}), 400
    )
    assert missing["issue"][0]["expression"] == ["active"]
    typed = {"resourceType": "Parameters", "parameter": [{"name": "active", "valueString": "x"}]}
    assert _refused(await ruled.post(f"/Patient/{pid}/$touch", json=typed), 400)["issue"][0][
        "expression"
    ] == ["Parameters.parameter[0].valueBoolean"]
    assert (await ruled.get(f"/Patient/{pid}")).json()["meta"]["versionId"] == "2"


async def test_system_operations_and_definitions_in_the_capability_statement(
    ruled: httpx.AsyncClient,
):
    assert (await ruled.get("/$ping", params={"message": "hi"})).json()["parameter"][0] == {
        "name": "echo",
        "valueString": "hi",
    }
    capability = (await ruled.get("/metadata")).json()
    rest = capability["rest"][0]
    assert [op["name"] for op in rest["operation"]] == ["ping"]
    patient_entry = next(r for r in rest["resource"] if r["type"] == "Patient")
    names = {op["name"]: op["definition"] for op in patient_entry["operation"]}
    assert set(names) == {"everything", "touch"}
    definition = (await ruled.get("/OperationDefinition/Patient-touch")).json()
    assert definition["url"] == names["touch"]
    assert definition["affectsState"] is True and definition["instance"] is True
    assert [p["name"] for p in definition["parameter"]] == ["active", "return"]
    listing = (await ruled.get("/OperationDefinition")).json()
    assert listing["total"] == 3
    unknown = await ruled.get("/Patient/$nope")
    assert unknown.status_code == 404 and "$nope" in unknown.json()["issue"][0]["diagnostics"]


@BACKENDS
async def test_everything_pages_through_the_patient_and_what_refers_to_it(outcomes, database_url):
    app = outcomes._transport.app
    writer, database = app.state.events.writer, app.state.fhir.database
    with database.write() as session:
        writer.put_version(session, "Patient", "pe", 1, {**patient(), "id": "pe"})
        writer.put_version(session, "Patient", "other", 1, {**patient(), "id": "other"})
    for n in range(4):
        obs = await outcomes.post("/Observation", json=_observation("pe", n), headers=FHIR_JSON)
        assert obs.status_code == 201, obs.text
    await outcomes.post("/Observation", json=_observation("other", 9), headers=FHIR_JSON)
    page = (await outcomes.get("/Patient/pe/$everything", params={"_count": 2})).json()
    assert page["total"] == 5
    ids = [e["resource"]["resourceType"] for e in page["entry"]]
    assert ids == ["Patient", "Observation"]
    seen = [e["fullUrl"] for e in page["entry"]]
    while nxt := [ln["url"] for ln in page["link"] if ln["relation"] == "next"]:
        page = (await outcomes.get(nxt[0])).json()
        seen += [e["fullUrl"] for e in page["entry"]]
    assert len(seen) == len(set(seen)) == 5
    assert not any("other" in url for url in seen)
    only = (await outcomes.get("/Patient/pe/$everything", params={"_type": "Patient"})).json()
    assert only["total"] == 1
    assert (await outcomes.get("/Patient/nobody/$everything")).status_code == 404


def _observation(pid: str, n: int) -> dict[str, Any]:
    from tests.factories import observation

    return observation(patient_id=pid, value=n)


# ---- reactions -----------------------------------------------------------------------------
@BACKENDS
async def test_a_patient_deleted_at_intake_cancels_their_open_appointments_once(
    scheduling: httpx.AsyncClient,
):
    app = scheduling._transport.app  # type: ignore[attr-defined]
    future, past = "2999-03-02T09:00:00Z", "2001-03-02T09:00:00Z"
    ids = {}
    for name, start, pid in (
        ("future", future, "gone"),
        ("past", past, "gone"),
        # Another day: Practitioner/dr1 is not booked twice at once.
        ("other", future.replace("03-02", "03-03"), "stays"),
    ):
        created = await scheduling.post(
            "/Appointment", json=appointment(pid, start), headers=FHIR_JSON
        )
        assert created.status_code == 201, created.text
        ids[name] = created.json()["id"]
    event = event_from(
        {
            "id": str(uuid.uuid4()),
            "type": "fhir.Patient.deleted",
            "subject": "Patient/gone",
            "versionid": "2",
            "time": "2026-11-30T10:00:00.000000Z",
        }
    )
    before = _outbox_count(scheduling)
    runner = app.state.events.consumer
    assert runner.apply("fhir.Patient", event) is True
    cancelled = (await scheduling.get(f"/Appointment/{ids['future']}")).json()
    assert cancelled["status"] == "cancelled"
    assert cancelled["cancelationReason"]["coding"][0]["code"] == "pat"
    for untouched in ("past", "other"):
        assert (await scheduling.get(f"/Appointment/{ids[untouched]}")).json()["status"] == (
            "booked"
        )
    # The cancellation travels as an event like any other write.
    assert _outbox_count(scheduling) == before + 1
    # Redelivered: skipped before its reactions run.
    assert runner.apply("fhir.Patient", event) is False
    assert _outbox_count(scheduling) == before + 1


def test_operations_refuse_a_get_that_would_write():
    with pytest.raises(ValueError):
        Operation(
            name="bad",
            levels=frozenset({"type"}),
            handler=_ping,
            description="",
            affects_state=True,
        )


async def test_the_unit_of_work_reports_committed_events_after_commit(ruled: httpx.AsyncClient):
    database = ruled._transport.app.state.fhir.database  # type: ignore[attr-defined]
    seen: list[bool] = []
    database.after_commit.append(lambda info: seen.append(bool(info.get("events_written"))))
    assert (await ruled.post("/Patient", json=patient())).status_code == 201
    assert (await ruled.post("/Patient", json={"resourceType": "Patient"})).status_code == 422
    # One commit, with events (the relay is woken by it); the refused write never committed.
    assert seen.count(True) == 1
