"""The Consent write rule: known patients, and the episode following the treatment consent."""

from __future__ import annotations

import asyncio
import json

import httpx
from sqlalchemy import select

from shared.db.models import OutboxRow
from tests.conftest import BACKENDS
from tests.enrolment_support import consent, given_consent, last_reason, screened_patient, statuses
from tests.outbox_rows import RESOURCE_EVENTS
from tests.screening_support import episode, screening


async def cleared_patient(intake: httpx.AsyncClient, **kwargs: object) -> str:
    """A patient screened all clear with no consent: waitlisted."""
    patient_id, found = await screened_patient(intake, yes=(), **kwargs)
    assert found["status"] == "waitlist"
    return patient_id


@BACKENDS
async def test_unknown_patients_are_refused_naming_the_field(intake: httpx.AsyncClient):
    refused = await intake.post("/Consent", json=consent("nobody"))
    assert refused.status_code == 422, refused.text
    assert refused.json()["issue"][0]["expression"] == ["Consent.patient"]
    assert "Patient/nobody" in refused.json()["issue"][0]["diagnostics"]
    nameless = {k: v for k, v in consent("x").items() if k != "patient"}
    refused = await intake.post("/Consent", json=nameless)
    assert refused.status_code == 422, refused.text
    assert refused.json()["issue"][0]["expression"] == ["Consent.patient"]
    planned = {
        "resourceType": "EpisodeOfCare",
        "status": "planned",
        "patient": {"reference": "Patient/nobody"},
    }
    refused = await intake.post("/EpisodeOfCare", json=planned)
    assert refused.status_code == 422, refused.text
    assert refused.json()["issue"][0]["expression"] == ["EpisodeOfCare.patient"]
    assert (await intake.get("/Consent", params={"patient": "nobody"})).json().get("entry") is None


@BACKENDS
async def test_a_new_consent_moves_waitlist_to_active_in_the_same_transaction(
    intake: httpx.AsyncClient,
):
    patient_id = await cleared_patient(intake)
    consent_id = await given_consent(intake, patient_id)
    found = await episode(intake, patient_id)
    assert found["status"] == "active"
    assert statuses(found) == ["waitlist", "active"]
    assert last_reason(found) == f"Treatment consent Consent/{consent_id} is in force"
    database = intake._transport.app.state.fhir.database  # type: ignore[attr-defined]
    with database.read() as session:
        rows = session.execute(
            select(OutboxRow.payload).where(RESOURCE_EVENTS).order_by(OutboxRow.pk)
        ).scalars()
        events = [(e["subject"], e["versionid"]) for e in map(json.loads, rows)]
    # One unit of work: the episode's new version (its rule ran before the Consent's row was
    # written) and the Consent, adjacent in the outbox.
    at = events.index((f"Consent/{consent_id}", "1"))
    assert events[at - 1] == (f"EpisodeOfCare/{found['id']}", found["meta"]["versionId"])


async def test_revocation_by_status_takes_an_active_episode_to_waitlist(
    intake: httpx.AsyncClient,
):
    patient_id = await cleared_patient(intake)
    consent_id = await given_consent(intake, patient_id)
    stored = (await intake.get(f"/Consent/{consent_id}")).json()
    changed = await intake.put(f"/Consent/{consent_id}", json={**stored, "status": "inactive"})
    assert changed.status_code == 200, changed.text
    found = await episode(intake, patient_id)
    assert statuses(found) == ["waitlist", "active", "waitlist"]
    assert last_reason(found) == f"Treatment consent withdrawn: Consent/{consent_id} is inactive"
    # Consenting again (a new Consent) starts treatment again.
    await given_consent(intake, patient_id)
    assert (await episode(intake, patient_id))["status"] == "active"


async def test_a_refusal_takes_an_active_episode_to_waitlist(intake: httpx.AsyncClient):
    patient_id = await cleared_patient(intake)
    await given_consent(intake, patient_id)
    refusal = await given_consent(intake, patient_id, deny=True)
    found = await episode(intake, patient_id)
    assert found["status"] == "waitlist"
    assert (
        last_reason(found) == f"Treatment refused: Consent/{refusal} denies (provision.type deny)"
    )
    # A further permit does not override the refusal in force; making it inactive does.
    await given_consent(intake, patient_id)
    assert (await episode(intake, patient_id))["status"] == "waitlist"
    stored = (await intake.get(f"/Consent/{refusal}")).json()
    await intake.put(f"/Consent/{refusal}", json={**stored, "status": "inactive"})
    assert (await episode(intake, patient_id))["status"] == "active"


@BACKENDS
async def test_deleting_the_consent_revokes_it(intake: httpx.AsyncClient):
    patient_id = await cleared_patient(intake)
    consent_id = await given_consent(intake, patient_id)
    assert (await intake.delete(f"/Consent/{consent_id}")).status_code == 204
    found = await episode(intake, patient_id)
    assert found["status"] == "waitlist"
    assert last_reason(found) == f"Treatment consent withdrawn: Consent/{consent_id} was deleted"


async def test_another_consent_in_force_keeps_the_episode_active(intake: httpx.AsyncClient):
    patient_id = await cleared_patient(intake)
    first = await given_consent(intake, patient_id)
    await given_consent(intake, patient_id)
    assert (await intake.delete(f"/Consent/{first}")).status_code == 204
    assert statuses(await episode(intake, patient_id)) == ["waitlist", "active"]


async def test_research_consents_do_not_move_the_episode(intake: httpx.AsyncClient):
    patient_id = await cleared_patient(intake)
    research = await given_consent(intake, patient_id, scope="research")
    assert (await episode(intake, patient_id))["status"] == "waitlist"
    await given_consent(intake, patient_id)
    assert (await intake.delete(f"/Consent/{research}")).status_code == 204
    await given_consent(intake, patient_id, scope="research", deny=True)
    assert statuses(await episode(intake, patient_id)) == ["waitlist", "active"]


async def test_an_ended_consent_period_does_not_count(intake: httpx.AsyncClient):
    patient_id = await cleared_patient(intake)
    await given_consent(intake, patient_id, period={"start": "2020-01-01", "end": "2021-01-01"})
    assert (await episode(intake, patient_id))["status"] == "waitlist"
    later = await given_consent(intake, patient_id, period={"start": "2020-01-01"})
    assert (await episode(intake, patient_id))["status"] == "active"
    stored = (await intake.get(f"/Consent/{later}")).json()
    ended = {**stored, "provision": {"type": "permit", "period": {"end": "2021-01-01"}}}
    assert (await intake.put(f"/Consent/{later}", json=ended)).status_code == 200
    found = await episode(intake, patient_id)
    assert found["status"] == "waitlist"
    assert "provision.period" in last_reason(found)


async def test_consent_does_not_move_onhold_cancelled_or_planned(intake: httpx.AsyncClient):
    onhold, _ = await screened_patient(intake)
    cancelled, _ = await screened_patient(intake, yes=("pregnancy",))
    for patient_id, status in ((onhold, "onhold"), (cancelled, "cancelled")):
        consent_id = await given_consent(intake, patient_id)
        assert (await episode(intake, patient_id))["status"] == status
        assert (await intake.delete(f"/Consent/{consent_id}")).status_code == 204
        assert statuses(await episode(intake, patient_id)) == [status]
    created = await intake.post("/Patient", json={"resourceType": "Patient"})
    planned_id = created.json()["id"]
    referral = {
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "subject": {"reference": f"Patient/{planned_id}"},
    }
    assert (await intake.post("/ServiceRequest", json=referral)).status_code == 201
    await given_consent(intake, planned_id)
    assert statuses(await episode(intake, planned_id)) == ["planned"]


@BACKENDS
async def test_a_failed_consent_write_leaves_the_episode_alone(intake: httpx.AsyncClient):
    patient_id = await cleared_patient(intake)
    body = {**consent(patient_id), "id": "c-new"}
    # If-Match on a create-by-PUT fails after the rule moved the episode: all rolls back.
    refused = await intake.put("/Consent/c-new", json=body, headers={"If-Match": 'W/"3"'})
    assert refused.status_code == 412, refused.text
    assert statuses(await episode(intake, patient_id)) == ["waitlist"]


@BACKENDS
async def test_concurrent_revocations_leave_no_consent_and_no_active_episode(
    intake: httpx.AsyncClient,
):
    """Each revocation sees the other's result (no write skew) and none fails on the episode."""
    patient_id = await cleared_patient(intake)
    consents = [await given_consent(intake, patient_id) for _ in range(4)]
    deleted = await asyncio.gather(*(intake.delete(f"/Consent/{c}") for c in consents))
    assert [r.status_code for r in deleted] == [204] * 4, [r.text for r in deleted]
    found = await episode(intake, patient_id)
    assert statuses(found) == ["waitlist", "active", "waitlist"]


async def test_screening_counts_only_a_consent_in_force(intake: httpx.AsyncClient):
    """Screening all clear is active only with a permit in force: not ended, not refused."""
    for kwargs in ({"period": {"end": "2021-01-01"}}, {"deny": True}, {"status": "draft"}):
        created = await intake.post("/Patient", json={"resourceType": "Patient"})
        patient_id = created.json()["id"]
        await given_consent(intake, patient_id, **kwargs)
        await intake.post("/QuestionnaireResponse", json=screening(patient_id))
        assert (await episode(intake, patient_id))["status"] == "waitlist", kwargs


async def test_a_consent_turned_to_research_no_longer_counts(intake: httpx.AsyncClient):
    patient_id = await cleared_patient(intake)
    consent_id = await given_consent(intake, patient_id)
    stored = (await intake.get(f"/Consent/{consent_id}")).json()
    research = {**stored, "scope": consent(patient_id, scope="research")["scope"]}
    assert (await intake.put(f"/Consent/{consent_id}", json=research)).status_code == 200
    found = await episode(intake, patient_id)
    assert found["status"] == "waitlist"
    assert "scope or patient changed" in last_reason(found)
