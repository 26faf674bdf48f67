"""Intake's programme resources reach scheduling and outcomes through a real broker.

Referral, screening and consent at intake write Patient, ServiceRequest, QuestionnaireResponse,
DetectedIssue, Consent and EpisodeOfCare; the services that replicate some of them must end up
holding exactly the owner's current version of each, searchable the way their rules will
search them (an active episode of a patient).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from tests import kafka_support
from tests.factories import patient
from tests.kafka_support import eventually, programme
from tests.screening_support import screening, search
from tooling.broker import Broker

kafka_broker = kafka_support.kafka_broker
topic_prefix = kafka_support.topic_prefix
new_database = kafka_support.new_database

REPLICAS = {
    "scheduling": ("Patient", "EpisodeOfCare", "Consent", "QuestionnaireResponse"),
    "outcomes": ("Patient", "EpisodeOfCare", "Consent", "QuestionnaireResponse"),
}


def _consent(patient_id: str, *, status: str = "active") -> dict[str, Any]:
    return {
        "resourceType": "Consent",
        "status": status,
        "scope": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                    "code": "treatment",
                }
            ]
        },
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": f"Patient/{patient_id}"},
        "dateTime": "2026-03-01T10:00:00Z",
        "policyRule": {"text": "Informed consent to ketamine-assisted EMDR"},
        "provision": {"type": "permit", "period": {"start": "2026-03-01T10:00:00Z"}},
    }


async def _owned(intake: httpx.AsyncClient, res_type: str, patient_id: str) -> list[dict]:
    param = "subject" if res_type == "QuestionnaireResponse" else "patient"
    if res_type == "Patient":
        return [(await intake.get(f"/Patient/{patient_id}")).json()]
    return await search(intake, f"/{res_type}", **{param: f"Patient/{patient_id}"})


async def _mirrors(
    intake: httpx.AsyncClient, replica: httpx.AsyncClient, types: tuple[str, ...], pid: str
) -> bool:
    """True when the replica holds every resource of `types` as intake's current version."""
    for res_type in types:
        for resource in await _owned(intake, res_type, pid):
            copy = await replica.get(f"/{res_type}/{resource['id']}")
            if copy.status_code != 200 or copy.json() != resource:
                return False
    return True


async def test_referral_screening_and_consent_reach_scheduling_and_outcomes(
    kafka_broker: Broker, topic_prefix: str, new_database: Callable[[str], str]
):
    services = programme(kafka_broker, topic_prefix, new_database)
    async with services as (intake, scheduling, outcomes):
        front = intake.client
        pid = (await front.post("/Patient", json=patient())).json()["id"]
        referral = {
            "resourceType": "ServiceRequest",
            "status": "active",
            "intent": "order",
            "subject": {"reference": f"Patient/{pid}"},
            "reasonCode": [{"coding": [{"system": "http://snomed.info/sct", "code": "47505003"}]}],
        }
        assert (await front.post("/ServiceRequest", json=referral)).status_code == 201
        screened = await front.post("/QuestionnaireResponse", json=screening(pid))
        assert screened.status_code == 201, screened.text
        consent = await front.post("/Consent", json=_consent(pid))
        assert consent.status_code == 201, consent.text
        (episode,) = await search(front, "/EpisodeOfCare", patient=f"Patient/{pid}")
        assert [h["status"] for h in episode["statusHistory"]][:2] == ["planned", "waitlist"]

        for name, service in (("scheduling", scheduling), ("outcomes", outcomes)):
            await eventually(
                lambda s=service, n=name: _mirrors(front, s.client, REPLICAS[n], pid),
                timeout=30,
                what=f"intake's resources replicated at {name}",
            )
            # The replica answers the search a booking rule makes for the patient's episode.
            found = await search(
                service.client,
                "/EpisodeOfCare",
                patient=f"Patient/{pid}",
                status=episode["status"],
            )
            assert [e["id"] for e in found] == [episode["id"]]

        # Consent withdrawn: the new Consent version, and whatever it does to the episode,
        # follow.
        withdrawn = {**consent.json(), "status": "inactive"}
        changed = await front.put(f"/Consent/{withdrawn['id']}", json=withdrawn)
        assert changed.status_code == 200, changed.text
        for name, service in (("scheduling", scheduling), ("outcomes", outcomes)):
            await eventually(
                lambda s=service, n=name: _mirrors(front, s.client, REPLICAS[n], pid),
                timeout=30,
                what=f"the withdrawal replicated at {name}",
            )
            copy = await service.client.get(f"/Consent/{withdrawn['id']}")
            assert copy.json()["status"] == "inactive"
        # The screening Questionnaire intake published at start (its item scores are what
        # outcomes scores baselines with) is replicated at outcomes.
        url = screened.json()["questionnaire"].split("|")[0]
        (published,) = await search(front, "/Questionnaire", url=url)

        async def questionnaire_replicated() -> bool:
            copy = await outcomes.client.get(f"/Questionnaire/{published['id']}")
            return copy.status_code == 200 and copy.json() == published

        await eventually(questionnaire_replicated, timeout=30, what="the Questionnaire replica")
        # Intake's own resources stay at intake: replicas only hold what they declared.
        (sent,) = await search(front, "/ServiceRequest", subject=f"Patient/{pid}")
        assert (await scheduling.client.get(f"/ServiceRequest/{sent['id']}")).status_code == 404
