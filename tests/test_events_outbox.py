"""The outbox: one row per committed change, in the change's transaction; the envelope."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import select

from shared.db.models import OutboxRow
from shared.events.envelope import EnvelopeError, parse_event
from shared.events.outbox import valid_traceparent
from shared.events.replica import ReplicaWriter
from tests.conftest import BACKENDS
from tests.factories import FHIR_JSON, appointment, patient
from tests.outbox_rows import RESOURCE_EVENTS

TRACEPARENT = re.compile(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")


def outbox(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    """Every outbox row of the client's service, oldest first (the audit trail's aside:
    tests/test_audit_kafka.py covers those)."""
    database = client._transport.app.state.fhir.database  # type: ignore[attr-defined]
    with database.read() as session:
        rows = (
            session.execute(select(OutboxRow).where(RESOURCE_EVENTS).order_by(OutboxRow.pk))
            .scalars()
            .all()
        )
        return [
            {
                "topic": r.topic,
                "key": r.key,
                "type": r.event_type,
                "event_id": r.event_id,
                "traceparent": r.traceparent,
                "sent_at": r.sent_at,
                "event": json.loads(r.payload),
            }
            for r in rows
        ]


def _transaction(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}


@BACKENDS
async def test_each_committed_write_writes_exactly_one_outbox_row(intake: httpx.AsyncClient):
    created = await intake.post("/Patient", json=patient(), headers=FHIR_JSON)
    assert created.status_code == 201, created.text
    pid = created.json()["id"]
    assert [r["type"] for r in outbox(intake)] == ["fhir.Patient.created"]

    updated = await intake.put(
        f"/Patient/{pid}", json={**patient(given="Jim"), "id": pid}, headers=FHIR_JSON
    )
    assert updated.status_code == 200, updated.text
    patched = await intake.patch(
        f"/Patient/{pid}",
        content=orjson.dumps([{"op": "replace", "path": "/gender", "value": "other"}]),
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert patched.status_code == 200, patched.text
    put_created = await intake.put("/Patient/by-put", json={**patient(), "id": "by-put"})
    assert put_created.status_code == 201, put_created.text
    deleted = await intake.delete(f"/Patient/{pid}")
    assert deleted.status_code in (200, 204)

    # Writes that change nothing or fail write no event.
    assert (await intake.delete(f"/Patient/{pid}")).status_code in (200, 204)  # already gone
    stale = await intake.put(
        "/Patient/by-put",
        json={**patient(), "id": "by-put"},
        headers={**FHIR_JSON, "If-Match": 'W/"9"'},
    )
    assert stale.status_code == 412
    invalid = await intake.post("/Patient", json={"resourceType": "Patient", "gender": 7})
    assert invalid.status_code in (400, 422)
    matched = await intake.post(
        "/Patient",
        json=patient(),
        headers={**FHIR_JSON, "If-None-Exist": "_id=by-put"},
    )
    assert matched.status_code == 200

    rows = outbox(intake)
    assert [(r["type"], r["key"], r["event"]["versionid"]) for r in rows] == [
        ("fhir.Patient.created", f"Patient/{pid}", "1"),
        ("fhir.Patient.updated", f"Patient/{pid}", "2"),
        ("fhir.Patient.updated", f"Patient/{pid}", "3"),
        ("fhir.Patient.created", "Patient/by-put", "1"),
        ("fhir.Patient.deleted", f"Patient/{pid}", "4"),
    ]
    assert {r["topic"] for r in rows} == {"fhir.Patient"}
    assert all(r["sent_at"] is None for r in rows)  # no broker configured: nothing relayed
    assert len({r["event_id"] for r in rows}) == len(rows)


@BACKENDS
async def test_a_rolled_back_transaction_bundle_writes_no_outbox_row(
    intake: httpx.AsyncClient,
):
    existing = (await intake.post("/Patient", json=patient(), headers=FHIR_JSON)).json()["id"]
    before = outbox(intake)
    failing = _transaction(
        {"resource": patient(family="Ghost"), "request": {"method": "POST", "url": "Patient"}},
        {
            "resource": {**patient(family="Stale"), "id": existing},
            "request": {"method": "PUT", "url": f"Patient/{existing}", "ifMatch": 'W/"7"'},
        },
    )
    response = await intake.post("/", json=failing, headers=FHIR_JSON)
    assert response.status_code == 412, response.text
    assert outbox(intake) == before
    ghosts = await intake.get("/Patient", params={"family": "Ghost"})
    assert ghosts.json().get("total", 0) == 0

    committed = _transaction(
        {"resource": patient(family="One"), "request": {"method": "POST", "url": "Patient"}},
        {"request": {"method": "DELETE", "url": f"Patient/{existing}"}},
    )
    response = await intake.post("/", json=committed, headers=FHIR_JSON)
    assert response.status_code == 200, response.text
    new = outbox(intake)[len(before) :]
    assert sorted(r["type"] for r in new) == ["fhir.Patient.created", "fhir.Patient.deleted"]


async def test_envelope_fields(intake: httpx.AsyncClient):
    created = await intake.post("/Patient", json=patient(), headers=FHIR_JSON)
    resource = created.json()
    pid = resource["id"]
    assert (await intake.delete(f"/Patient/{pid}")).status_code in (200, 204)
    create_row, delete_row = outbox(intake)

    event = create_row["event"]
    assert set(event) == {
        "specversion",
        "id",
        "source",
        "type",
        "subject",
        "time",
        "datacontenttype",
        "versionid",
        "data",
    }
    assert event["specversion"] == "1.0"
    assert str(uuid.UUID(event["id"])) == event["id"] == create_row["event_id"]
    assert event["source"] == "urn:kemdr:intake"
    assert event["type"] == "fhir.Patient.created"
    assert event["subject"] == f"Patient/{pid}"
    assert event["time"] == resource["meta"]["lastUpdated"]
    assert event["datacontenttype"] == "application/fhir+json"
    assert event["versionid"] == resource["meta"]["versionId"] == "1"
    assert event["data"] == resource
    assert parse_event(orjson.dumps(event)).model_dump(exclude_none=True) == event

    deletion = delete_row["event"]
    assert deletion["type"] == "fhir.Patient.deleted"
    assert deletion["versionid"] == "2"
    assert "data" not in deletion and "dataomitted" not in deletion
    assert parse_event(orjson.dumps(deletion)).model_dump(exclude_none=True) == deletion


async def test_an_oversized_resource_travels_id_only(
    service_client: Callable[..., httpx.AsyncClient],
):
    async with service_client("intake", event_max_data_bytes=400) as intake:
        small = await intake.post("/Patient", json=patient(), headers=FHIR_JSON)
        big = await intake.post("/Patient", json=patient(family="x" * 1000), headers=FHIR_JSON)
        assert small.status_code == big.status_code == 201
        first, second = (r["event"] for r in outbox(intake))
    assert first["data"] == small.json() and "dataomitted" not in first
    assert "data" not in second
    assert second["dataomitted"] is True
    assert second["subject"] == f"Patient/{big.json()['id']}"
    assert second["versionid"] == "1"
    assert parse_event(orjson.dumps(second)).model_dump(exclude_none=True) == second


async def test_the_callers_traceparent_is_carried_into_the_event(intake: httpx.AsyncClient):
    given = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    await intake.post("/Patient", json=patient(), headers={**FHIR_JSON, "traceparent": given})
    await intake.post("/Patient", json=patient(), headers=FHIR_JSON)
    # A malformed header must neither fail the write nor reach the event.
    bad = "00-" + "z" * 200
    response = await intake.post(
        "/Patient", json=patient(), headers={**FHIR_JSON, "traceparent": bad}
    )
    assert response.status_code == 201
    bundle = _transaction({"resource": patient(), "request": {"method": "POST", "url": "Patient"}})
    await intake.post("/", json=bundle, headers={**FHIR_JSON, "traceparent": given})
    carried, fresh, replaced, in_bundle = (r["traceparent"] for r in outbox(intake))
    assert carried == given == in_bundle
    assert TRACEPARENT.match(fresh) and fresh != given
    assert TRACEPARENT.match(replaced)


def test_traceparent_validation():
    good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert valid_traceparent(good) == good
    assert valid_traceparent(f" {good}\n") == good  # surrounding whitespace is not part of it
    for bad in (
        None,
        "",
        good.upper(),
        good + "-00",
        "ff" + good[2:],
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        good.replace("-", "_"),
    ):
        assert valid_traceparent(bad) is None, bad


@pytest.mark.parametrize(
    "service,res_type,owner",
    [
        ("scheduling", "Patient", "intake"),
        ("outcomes", "Patient", "intake"),
        ("outcomes", "Appointment", "scheduling"),
    ],
)
async def test_replica_writes_get_405_naming_the_owner(
    service_client: Callable[..., httpx.AsyncClient], service: str, res_type: str, owner: str
):
    body = patient() if res_type == "Patient" else appointment()
    async with service_client(service) as client:
        attempts = [
            await client.post(f"/{res_type}", json=body, headers=FHIR_JSON),
            await client.put(f"/{res_type}/r1", json={**body, "id": "r1"}, headers=FHIR_JSON),
            await client.delete(f"/{res_type}/r1"),
            await client.patch(
                f"/{res_type}/r1",
                content=b"[]",
                headers={"Content-Type": "application/json-patch+json"},
            ),
        ]
        for response in attempts:
            assert response.status_code == 405, (response.request.method, response.text)
            assert owner in response.json()["issue"][0]["diagnostics"]
        bundle = _transaction({"resource": body, "request": {"method": "POST", "url": res_type}})
        response = await client.post("/", json=bundle, headers=FHIR_JSON)
        assert response.status_code == 405, response.text
        assert owner in response.text
        assert outbox(client) == []


async def test_replicated_versions_write_no_outbox_row(scheduling: httpx.AsyncClient):
    context = scheduling._transport.app.state.fhir  # type: ignore[attr-defined]
    writer = ReplicaWriter(context.store)
    with context.database.write() as session:
        assert writer.put_version(session, "Patient", "p1", 3, {**patient(), "id": "p1"})
    read = await scheduling.get("/Patient/p1")
    assert read.status_code == 200
    assert outbox(scheduling) == []
    # An owned write is published, as in any service.
    created = await scheduling.post("/Appointment", json=appointment("p1"), headers=FHIR_JSON)
    assert created.status_code == 201, created.text
    assert [(r["topic"], r["type"]) for r in outbox(scheduling)] == [
        ("fhir.Appointment", "fhir.Appointment.created")
    ]


_GOOD = {
    "specversion": "1.0",
    "id": "6f1c1c1e-9d7e-4b7a-9d59-3f2a3e8f7a10",
    "source": "urn:kemdr:intake",
    "type": "fhir.Patient.updated",
    "subject": "Patient/p1",
    "time": "2026-01-01T00:00:00.000Z",
    "datacontenttype": "application/fhir+json",
    "versionid": "2",
    "data": {"resourceType": "Patient", "id": "p1"},
}


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not json",
        b"[1, 2]",
        orjson.dumps({**_GOOD, "id": "not-a-uuid"}),
        orjson.dumps({**_GOOD, "id": "{" + _GOOD["id"] + "}"}),
        orjson.dumps({**_GOOD, "versionid": "0"}),
        orjson.dumps({**_GOOD, "versionid": "99999999999"}),
        orjson.dumps({**_GOOD, "subject": "Patient"}),
        orjson.dumps({**_GOOD, "subject": "Patient/" + "x" * 65}),
        orjson.dumps({**_GOOD, "type": "fhir.Patient.exploded"}),
        orjson.dumps({**_GOOD, "type": "fhir.Observation.updated"}),
        orjson.dumps({**_GOOD, "data": None}),  # must never read as a deletion
        orjson.dumps({k: v for k, v in _GOOD.items() if k != "data"}),
        orjson.dumps({**_GOOD, "data": {"resourceType": "Patient", "id": "p2"}}),
    ],
)
def test_malformed_envelopes_are_poison(raw: bytes):
    with pytest.raises(EnvelopeError):
        parse_event(raw)


def test_well_formed_envelopes_parse():
    assert parse_event(orjson.dumps(_GOOD)).model_dump(exclude_none=True) == _GOOD
    omitted = {k: v for k, v in _GOOD.items() if k != "data"} | {"dataomitted": True}
    assert parse_event(orjson.dumps(omitted)).model_dump(exclude_none=True) == omitted
    deleted = {k: v for k, v in _GOOD.items() if k != "data"} | {"type": "fhir.Patient.deleted"}
    assert parse_event(orjson.dumps(deleted)).model_dump(exclude_none=True) == deleted
