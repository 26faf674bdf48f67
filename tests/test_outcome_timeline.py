"""Issue 11: outcomes' timeline tables follow every version of the resources they come from:
its own Observation writes and the replicas of doses, EMDR sessions, encounters and consents."""

from __future__ import annotations

from datetime import datetime

import httpx

from services.outcomes.timeline.tables import CONSENTS, DOSES, ENCOUNTERS, SCORES, SESSIONS
from shared.events.replica import ReplicaWriter
from tests.conftest import BACKENDS
from tests.dosing_support import WINDOW, dose
from tests.measures_support import LOCAL, known_patient, score, vital
from tests.replanning_support import CONSENT_SCOPE, session
from tests.replicas import replicate
from tests.timeline_support import rows

pytestmark = BACKENDS


async def _post(client: httpx.AsyncClient, body: dict) -> str:
    response = await client.post("/Observation", json=body)
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def test_a_score_is_projected_and_follows_its_updates_and_deletion(outcomes):
    known_patient(outcomes)
    obs_id = await _post(outcomes, score("44261-6", 14, encounter={"reference": "Encounter/e1"}))
    (row,) = rows(outcomes, SCORES)
    assert row == {
        "obs_id": obs_id,
        "patient_id": "p1",
        "measure": "phq9-total",
        "effective": datetime(2026, 3, 1, 10, 0),
        "value": 14.0,
        "encounter_id": "e1",
        "derived": False,
    }
    body = {**score("44261-6", 9), "id": obs_id, "status": "amended"}
    assert (await outcomes.put(f"/Observation/{obs_id}", json=body)).status_code == 200
    assert [(r["value"], r["encounter_id"]) for r in rows(outcomes, SCORES)] == [(9.0, None)]
    # A value entered in error no longer stands: it leaves the timeline.
    body = {**body, "status": "entered-in-error"}
    assert (await outcomes.put(f"/Observation/{obs_id}", json=body)).status_code == 200
    assert rows(outcomes, SCORES) == []
    body = {**body, "status": "final"}
    assert (await outcomes.put(f"/Observation/{obs_id}", json=body)).status_code == 200
    assert (await outcomes.delete(f"/Observation/{obs_id}")).status_code in (200, 204)
    assert rows(outcomes, SCORES) == []


async def test_only_standing_scores_of_known_instruments_are_projected(outcomes):
    known_patient(outcomes)
    await _post(outcomes, score("suds", 7, system=LOCAL))
    await _post(outcomes, score("44261-6", 5, status="preliminary"))
    await _post(outcomes, vital("8867-4", 72, "/min"))  # a vital sign, not a score
    await _post(outcomes, score("12345-6", 3))  # a code outcomes does not know
    await _post(
        outcomes, score("101698-9", 40, derivedFrom=[{"reference": "QuestionnaireResponse/q"}])
    )
    found = {(r["measure"], r["value"], r["derived"]) for r in rows(outcomes, SCORES)}
    assert found == {("suds", 7.0, False), ("pcl5-total", 40.0, True)}


async def test_a_replicated_dose_brings_its_time_route_protocol_and_window(outcomes):
    body = dose("p1", route="im", ended="2026-03-02T10:40:00Z")
    body["extension"] = [
        {
            "url": WINDOW,
            "extension": [
                {"url": "windowStart", "valueDateTime": "2026-03-02T12:40:00Z"},
                {"url": "optimalStart", "valueDateTime": "2026-03-03T10:40:00Z"},
                {"url": "optimalEnd", "valueDateTime": "2026-03-05T10:40:00Z"},
                {"url": "windowEnd", "valueDateTime": "2026-03-09T10:40:00Z"},
                {"url": "protocol", "valueString": "im-racemic|1.0.0"},
            ],
        }
    ]
    replicate(outcomes, "MedicationAdministration", "d1", body)
    (row,) = rows(outcomes, DOSES)
    assert row == {
        "dose_id": "d1",
        "patient_id": "p1",
        "start": datetime(2026, 3, 2, 10, 0),
        "ended": datetime(2026, 3, 2, 10, 40),
        "route": "78421000",
        "protocol": "im-racemic",
        "window_start": datetime(2026, 3, 2, 12, 40),
        "optimal_start": datetime(2026, 3, 3, 10, 40),
        "optimal_end": datetime(2026, 3, 5, 10, 40),
        "window_end": datetime(2026, 3, 9, 10, 40),
    }
    # A newer version that is no longer completed (entered in error) leaves the timeline.
    replicate(outcomes, "MedicationAdministration", "d1", {**body, "status": "entered-in-error"}, 2)
    assert rows(outcomes, DOSES) == []
    replicate(outcomes, "MedicationAdministration", "d2", dose("p1", status="not-done"))
    assert rows(outcomes, DOSES) == []


async def test_emdr_sessions_and_their_encounters_are_projected(outcomes):
    emdr = session("p1", "emdr", start="2026-03-03T10:40:00Z", dose="MedicationAdministration/d1")
    replicate(outcomes, "Appointment", "a1", emdr)
    replicate(outcomes, "Appointment", "a2", session("p1", "dosing"))  # not an EMDR session
    (row,) = rows(outcomes, SESSIONS)
    assert row == {
        "appointment_id": "a1",
        "patient_id": "p1",
        "start": datetime(2026, 3, 3, 10, 40),
        "end": datetime(2026, 3, 3, 11, 40),
        "status": "booked",
        "dose_id": "d1",
        "offset_hours": 24.0,
    }
    encounter = {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"code": "AMB"},
        "subject": {"reference": "Patient/p1"},
        "appointment": [{"reference": "Appointment/a1"}],
        "period": {"start": "2026-03-03T10:45:00Z", "end": "2026-03-03T11:35:00Z"},
    }
    replicate(outcomes, "Encounter", "e1", encounter)
    (found,) = rows(outcomes, ENCOUNTERS)
    assert (found["appointment_id"], found["status"], found["end"]) == (
        "a1",
        "finished",
        datetime(2026, 3, 3, 11, 35),
    )
    context = outcomes._transport.app.state.fhir  # type: ignore[attr-defined]
    with context.database.write() as db:  # deleted at the owner
        assert ReplicaWriter(context.store).put_version(db, "Appointment", "a1", 2, None)
    assert rows(outcomes, SESSIONS) == []


async def test_consents_say_whether_they_are_for_research_and_until_when(outcomes):
    def consent(code: str, end: str | None = None) -> dict:
        body = {
            "resourceType": "Consent",
            "status": "active",
            "scope": {"coding": [{"system": CONSENT_SCOPE, "code": code}]},
            "category": [{"coding": [{"system": "http://loinc.org", "code": "57016-8"}]}],
            "patient": {"reference": "Patient/p1"},
        }
        if end is not None:
            body["provision"] = {"type": "permit", "period": {"end": end}}
        return body

    replicate(outcomes, "Consent", "c1", consent("research", "2027-01-31"))
    replicate(outcomes, "Consent", "c2", consent("treatment"))
    found = {r["consent_id"]: (r["research"], r["period_end"]) for r in rows(outcomes, CONSENTS)}
    assert found == {"c1": (True, datetime(2027, 1, 31, 23, 59, 59, 999999)), "c2": (False, None)}


async def test_a_projection_rebuilt_from_the_store_equals_the_one_kept_in_step(outcomes):
    known_patient(outcomes)
    for value in (20, 15, 8):
        await _post(outcomes, score("44261-6", value))
    kept = rows(outcomes, SCORES)
    context = outcomes._transport.app.state.fhir  # type: ignore[attr-defined]
    (projection,) = context.registry.projections["Observation"]
    with context.database.write() as db:
        assert projection.rebuild(db) == 3
    assert rows(outcomes, SCORES) == kept
