"""Intake's replicated EpisodeOfCare and Consent events cancel a patient's future
programme sessions once the enrolment is no longer active (a reaction, once per event)."""

from __future__ import annotations

from typing import Any

import httpx

from shared.events.envelope import ResourceEvent
from tests.booking_support import start_course
from tests.conftest import BACKENDS
from tests.dosing_support import clinician
from tests.holds_support import ready
from tests.outbox_rows import events_of
from tests.replanning_support import (
    LATER,
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


async def _book(
    client: httpx.AsyncClient, patient_id: str, episode_id: str
) -> dict[str, dict[str, Any]]:
    """The patient enrolled (intake's event) on an agreed course; a future session of each
    kind, a past one and a future non-programme one, with their own practitioner and room."""
    active = replica_event("EpisodeOfCare", episode_id, 1, episode(patient_id, "active"))
    assert _apply(client, active)
    await start_course(client, patient_id, enrolled=True)
    own = {"practitioner": f"Practitioner/dr-{patient_id}", "room": f"Location/room-{patient_id}"}
    # No dose given yet: the EMDR session is booked outside any window, by a clinician's choice.
    emdr = {"status": "pending", "override": "assessment before the first dose"}
    bodies = {
        "dosing": session(patient_id, "dosing", **own),
        "emdr": session(patient_id, "emdr", start=LATER[0], **emdr, **own),
        "preparation": session(patient_id, "preparation", start=LATER[1], status="proposed"),
        "past": session(patient_id, "integration", start=PAST, **own),
        "other": session(patient_id, None, start=LATER[2], **own),
    }
    return {name: await created(client, body, headers=clinician()) for name, body in bodies.items()}


def _put_quietly(client: httpx.AsyncClient, episode_id: str, body: dict, version: int) -> None:
    """Store an episode version in the replica without its event's reactions (as when the
    event was consumed elsewhere first)."""
    writer = client._transport.app.state.events.writer  # type: ignore[attr-defined]
    database = client._transport.app.state.fhir.database  # type: ignore[attr-defined]
    with database.write() as db:
        assert writer.put_version(db, "EpisodeOfCare", episode_id, version, body)


@BACKENDS
async def test_an_episode_leaving_active_cancels_future_sessions_once(
    scheduling: httpx.AsyncClient,
):
    booked = await _book(scheduling, "p1", "e1")
    others = await _book(scheduling, "p2", "e2")
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
    booked = await _book(scheduling, "p1", "e1")
    assert _apply(scheduling, replica_event("EpisodeOfCare", "e1", 2, None))
    read = await scheduling.get(f"/Appointment/{booked['emdr']['id']}", headers=clinician())
    assert read.json()["cancelationReason"]["text"] == "Enrolment left active: deleted"


@BACKENDS
async def test_a_revoked_consent_cancels_only_once_no_episode_is_active(
    scheduling: httpx.AsyncClient,
):
    booked = await _book(scheduling, "p1", "e1")
    assert _apply(scheduling, replica_event("Consent", "c1", 1, consent("p1")))
    # Revoked while the episode still reads active (its event not here yet): left to it.
    assert _apply(scheduling, replica_event("Consent", "c1", 2, consent("p1", "inactive")))
    assert await _status(scheduling, booked["dosing"]) == "booked"

    # The episode's event came first elsewhere: the consent's own then does it.
    moved = await _book(scheduling, "p2", "e2")
    _put_quietly(scheduling, "e2", {**episode("p2", "waitlist"), "id": "e2"}, 2)
    assert await _status(scheduling, moved["dosing"]) == "booked"  # no reaction to a put
    assert _apply(scheduling, replica_event("Consent", "c2", 1, consent("p2", provision="deny")))
    read = await scheduling.get(f"/Appointment/{moved['dosing']['id']}", headers=clinician())
    assert read.json()["status"] == "cancelled"
    assert "consent withdrawn" in read.json()["cancelationReason"]["text"]


async def test_a_deleted_treatment_consent_cancels_and_other_scopes_do_not(
    scheduling: httpx.AsyncClient,
):
    booked = await _book(scheduling, "p1", "e1")
    # The episode left active before (its event consumed elsewhere): the consent decides.
    _put_quietly(scheduling, "e1", {**episode("p1", "finished"), "id": "e1"}, 2)
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

    await ready(scheduling, "p1")  # enrolled (ep-p1), a weight, the course, a dosing session
    dosing = await created(scheduling, session("p1", "dosing"), headers=clinician())
    link = {"supportingInformation": [{"reference": f"Appointment/{dosing['id']}"}]}
    given = await created(scheduling, {**dose("p1"), **link}, headers=clinician())
    opened = f"MedicationAdministration/{given['id']}"
    emdr = await created(
        scheduling,
        session("p1", "emdr", start=LATER[0], dose=opened, override="after the next dose"),
        headers=clinician(),
    )
    finished = replica_event("EpisodeOfCare", "ep-p1", 2, episode("p1", "finished"))
    assert _apply(scheduling, finished)
    for appointment in (dosing, emdr):
        assert await _status(scheduling, appointment) == "cancelled"
