"""What a client may not do to an EpisodeOfCare: move it to another patient, rewrite what
the server recorded, or open a second one beside an open one; a clinician's ending is kept
in statusHistory like the server's own moves."""

from __future__ import annotations

import httpx

from tests.auth_support import bearer
from tests.screening_support import episode, new_patient, screening

CLINICIAN = bearer(user="Practitioner/dr-1")


async def _screened(intake: httpx.AsyncClient, **answers: object) -> tuple[str, dict]:
    patient_id = await new_patient(intake)
    sent = await intake.post("/QuestionnaireResponse", json=screening(patient_id, **answers))
    assert sent.status_code == 201, sent.text
    return patient_id, await episode(intake, patient_id)


async def test_an_episode_cannot_move_to_another_patient(intake: httpx.AsyncClient):
    _, found = await _screened(intake)
    other = await new_patient(intake)
    moved = {**found, "patient": {"reference": f"Patient/{other}"}}
    refused = await intake.put(f"/EpisodeOfCare/{found['id']}", json=moved, headers=CLINICIAN)
    assert refused.status_code == 422, refused.text
    assert refused.json()["issue"][0]["expression"] == ["EpisodeOfCare.patient"]
    enrolment = await intake.get(f"/Patient/{other}/$enrolment")
    assert "parameter" not in enrolment.json()


async def test_status_history_and_the_rule_table_are_the_servers(intake: httpx.AsyncClient):
    _, found = await _screened(intake)
    forged = [{"status": "active", "period": {"start": "2026-01-01T00:00:00Z"}}]
    for element, changed in (
        ("statusHistory", {**found, "statusHistory": forged}),
        ("extension", {**found, "extension": []}),
    ):
        refused = await intake.put(f"/EpisodeOfCare/{found['id']}", json=changed)
        assert refused.status_code == 422, refused.text
        assert refused.json()["issue"][0]["expression"] == [f"EpisodeOfCare.{element}"]
    # Other elements stay the client's: a care manager may be named.
    managed = {**found, "careManager": {"reference": "Practitioner/dr-1"}}
    assert (await intake.put(f"/EpisodeOfCare/{found['id']}", json=managed)).status_code == 200


async def test_one_open_episode_per_patient(intake: httpx.AsyncClient):
    patient_id, found = await _screened(intake)
    second = {
        "resourceType": "EpisodeOfCare",
        "status": "planned",
        "patient": {"reference": f"Patient/{patient_id}"},
    }
    refused = await intake.post("/EpisodeOfCare", json=second)
    assert refused.status_code == 409, refused.text
    assert refused.json()["issue"][0]["expression"] == ["EpisodeOfCare.patient"]
    # Once the open one is ended, a new course may be planned.
    ended = await intake.put(
        f"/EpisodeOfCare/{found['id']}", json={**found, "status": "finished"}, headers=CLINICIAN
    )
    assert ended.status_code == 200, ended.text
    assert (await intake.post("/EpisodeOfCare", json=second)).status_code == 201


async def test_a_clinicians_ending_is_recorded_in_status_history(intake: httpx.AsyncClient):
    _, found = await _screened(intake)
    ended = await intake.put(
        f"/EpisodeOfCare/{found['id']}", json={**found, "status": "cancelled"}, headers=CLINICIAN
    )
    assert ended.status_code == 200, ended.text
    history = ended.json()["statusHistory"]
    assert [h["status"] for h in history] == ["waitlist", "cancelled"]
    assert "end" in history[0]["period"]
    assert history[-1]["extension"][0]["valueString"] == "Ended by Practitioner/dr-1"
