"""A replica never lets an older version overwrite a newer one, whatever the delivery order."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from shared.events.envelope import ResourceEvent, event_from
from tests.factories import patient


def _event(pid: str, version: int, given: str | None) -> ResourceEvent:
    action = "deleted" if given is None else ("created" if version == 1 else "updated")
    event: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "type": f"fhir.Patient.{action}",
        "subject": f"Patient/{pid}",
        "versionid": str(version),
        "time": f"2026-11-30T10:00:0{version}.000000Z",
    }
    if given is not None:
        event["data"] = {
            **patient(given=given),
            "id": pid,
            "meta": {"versionId": str(version), "lastUpdated": event["time"]},
        }
    return event_from(event)


def _deliver(scheduling: httpx.AsyncClient, *events: ResourceEvent) -> list[bool]:
    app = scheduling._transport.app  # type: ignore[attr-defined]
    writer, database = app.state.events.writer, app.state.fhir.database
    applied = []
    for event in events:
        with database.write() as session:
            applied.append(writer.apply_event(session, event))
    return applied


async def test_a_late_older_version_changes_nothing(scheduling: httpx.AsyncClient):
    applied = _deliver(
        scheduling, _event("p1", 1, "One"), _event("p1", 3, "Three"), _event("p1", 2, "Two")
    )
    assert applied == [True, True, False]
    current = (await scheduling.get("/Patient/p1")).json()
    assert current["meta"]["versionId"] == "3"
    assert current["name"][0]["given"] == ["Three"]
    # Searches see the newest version's index rows, not the late one's.
    found = (await scheduling.get("/Patient", params={"given": "Two"})).json()
    assert found["total"] == 0
    assert (await scheduling.get("/Patient", params={"given": "Three"})).json()["total"] == 1


async def test_an_older_update_after_a_delete_does_not_resurrect(scheduling: httpx.AsyncClient):
    applied = _deliver(
        scheduling, _event("p2", 1, "One"), _event("p2", 3, None), _event("p2", 2, "Two")
    )
    assert applied == [True, True, False]
    assert (await scheduling.get("/Patient/p2")).status_code == 410
    assert (await scheduling.get("/Patient", params={"given": "Two"})).json()["total"] == 0


async def test_a_repeated_version_is_applied_once(scheduling: httpx.AsyncClient):
    once = _event("p3", 1, "One")
    again = once.model_copy(update={"id": str(uuid.uuid4())})
    assert _deliver(scheduling, once, again) == [True, False]
    history = (await scheduling.get("/Patient/p3/_history")).json()
    assert history["total"] == 1
