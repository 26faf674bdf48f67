"""Intake's replicated EpisodeOfCare and Consent events cancel a patient's future
programme sessions once the enrolment is no longer active (a reaction, once per event)."""

from __future__ import annotations

from typing import Any

import httpx

from shared.events.envelope import ResourceEvent
from tests.conftest import BACKENDS
from tests.dosing_support import clinician
from tests.holds_support import ready
from tests.outbox_rows import events_of
from tests.replanning_support import (
    PAST,
    consent,
    created,
    episode,
    replica_event,
    session,
)


def _apply(client: httpx.AsyncClient, event: ResourceEvent) -> bool:
    runner = client._transport.app.state.events.consumer  # type: ignore[attr-defined]
    return runner.apply(f"fhir.{event.res_type}", event)


async def _status(client: httpx.AsyncClient, appointment: dict[str, Any]) -> str:
    response = await client.get(f"/Appointment/{appointment['id']}", headers=clinician())
    return response.json()["status"]


async def _book(client: httpx.AsyncClient, patient_id: str) -> dict[str, dict[str, Any]]:
    """A future session of each kind, a past one and a future non-programme one."""
    bodies = {
        "dosing": session(patient_id, "dosing"),
        "emdr": session(patient_id, "emdr", status="pending"),
        "preparation": session(patient_id, "preparation", status="proposed"),
        "past": session(patient_id, "integration", start=PAST),
        "other": session(patient_id, None),
    }
    return {name: await created(client, body, headers=clinician()) for name, body in bodies.items()}


@BACKENDS
async def test_an_episode_leaving_active_cancels_future_sessions_once(
    scheduling: httpx.AsyncClient,
):
    booked = await _book(scheduling, "p1")
    others = await _book(scheduling, "p2")
    assert _apply(scheduling, replica_event("EpisodeOfCare", "e1", 1, episode("p1", "active")))
    assert await _status(scheduling, booked["dosing"]) == "booked"

    before = len(events_of(scheduling, "Appointment"))
    left = replica_event("EpisodeOfCare", "e1", 2, episode("p1", "waitlist"))
    assert _apply(scheduling, left)
    for name in ("dosing", "emdr", "preparation"):
        read = await scheduling.get(f"/Appointment/{booked[name]['id']}", headers=clinician())
        cancelled = read.json()
        assert cancelled["status"] == "cancelled"
        assert cancelled["cancelationReason"]["text"] == (
            "Enrolment left active: waitlist (treatment consent withdrawn)"
        )
    assert await _status(scheduling, booked["past"]) == "booked"
    assert await _status(scheduling, booked["other"]) == "booked"
    assert await _status(scheduling, others["dosing"]) == "booked"
    # One update event per cancelled session; a redelivered event acts no more.
    assert len(events_of(scheduling, "Appointment")) == before + 3
    assert _apply(scheduling, left) is False
    assert len(events_of(scheduling, "Appointment")) == before + 3


async def test_a_deleted_episode_cancels_too(scheduling: httpx.AsyncClient):
    booked = await _book(scheduling, "p1")
    assert _apply(scheduling, replica_event("EpisodeOfCare", "e1", 1, episode("p1", "active")))
    assert _apply(scheduling, replica_event("EpisodeOfCare", "e1", 2, None))
    read = await scheduling.get(f"/Appointment/{booked['emdr']['id']}", headers=clinician())
    assert read.json()["cancelationReason"]["text"] == "Enrolment left active: deleted"


@BACKENDS
async def test_a_revoked_consent_cancels_only_once_no_episode_is_active(
    scheduling: httpx.AsyncClient,
):
    booked = await _book(scheduling, "p1")
    assert _apply(scheduling, replica_event("EpisodeOfCare", "e1", 1, episode("p1", "active")))
    assert _apply(scheduling, replica_event("Consent", "c1", 1, consent("p1")))
    # Revoked while the episode still reads active (its event not here yet): left to it.
    assert _apply(scheduling, replica_event("Consent", "c1", 2, consent("p1", "inactive")))
    assert await _status(scheduling, booked["dosing"]) == "booked"

    # The episode's event came first elsewhere: the consent's own then does it.
    assert _apply(scheduling, replica_event("EpisodeOfCare", "e2", 1, episode("p2", "active")))
    moved = await _book(scheduling, "p2")
    writer = scheduling._transport.app.state.events.writer  # type: ignore[attr-defined]
    database = scheduling._transport.app.state.fhir.database  # type: ignore[attr-defined]
    with database.write() as db:
        body = {**episode("p2", "waitlist"), "id": "e2"}
        assert writer.put_version(db, "EpisodeOfCare", "e2", 2, body)
    assert await _status(scheduling, moved["dosing"]) == "booked"  # no reaction to a put
    assert _apply(scheduling, replica_event("Consent", "c2", 1, consent("p2", provision="deny")))
    read = await scheduling.get(f"/Appointment/{moved['dosing']['id']}", headers=clinician())
    assert read.json()["status"] == "cancelled"
    assert "consent withdrawn" in read.json()["cancelationReason"]["text"]


async def test_a_deleted_treatment_consent_cancels_and_other_scopes_do_not(
    scheduling: httpx.AsyncClient,
):
    booked = await _book(scheduling, "p1")
    research = {**consent("p1", "rejected"), "scope": {"coding": [{"code": "research"}]}}
    assert _apply(scheduling, replica_event("Consent", "r1", 1, research))
    assert await _status(scheduling, booked["dosing"]) == "booked"  # not a treatment consent
    assert _apply(scheduling, replica_event("Consent", "c1", 1, consent("p1")))
    assert await _status(scheduling, booked["dosing"]) == "booked"  # permits
    assert _apply(scheduling, replica_event("Consent", "c1", 2, None))
    assert await _status(scheduling, booked["dosing"]) == "cancelled"  # no episode active


async def test_cancelling_a_dosing_session_with_its_emdr_sessions_in_one_go(
    scheduling: httpx.AsyncClient,
):
    """A dosing session cancelled re-proposes its EMDR sessions (a rule) mid-reaction;
    those are cancelled too, written over their new version."""
    from tests.dosing_support import dose

    dosing = await created(scheduling, session("p1", "dosing"), headers=clinician())
    link = {"supportingInformation": [{"reference": f"Appointment/{dosing['id']}"}]}
    await ready(scheduling, "p1")  # a weight and the booked dosing session
    given = await created(scheduling, {**dose("p1"), **link}, headers=clinician())
    emdr = await created(
        scheduling,
        session("p1", "emdr", dose=f"MedicationAdministration/{given['id']}"),
        headers=clinician(),
    )
    assert _apply(scheduling, replica_event("EpisodeOfCare", "e1", 1, episode("p1", "finished")))
    for appointment in (dosing, emdr):
        assert await _status(scheduling, appointment) == "cancelled"
