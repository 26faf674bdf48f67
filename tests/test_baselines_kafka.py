"""End to end through a real broker: a screening answered at intake gives outcomes its baseline
PHQ-9 and PCL-5 totals from intake's events alone; amending the response amends them, deleting
it withdraws them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from tests import kafka_support
from tests.kafka_support import eventually, programme
from tests.screening_support import new_patient, screening
from tooling.broker import Broker

kafka_broker = kafka_support.kafka_broker
topic_prefix = kafka_support.topic_prefix
new_database = kafka_support.new_database

LOINC = "http://loinc.org"
PHQ9, PCL5 = "44261-6", "101698-9"


def _when(
    out: httpx.AsyncClient, code: str, check: Callable[[dict[str, Any]], bool]
) -> Callable[[], Awaitable[dict[str, Any] | None]]:
    """A poll for the patient's one derived total of `code` once `check` holds of it."""

    async def poll() -> dict[str, Any] | None:
        found = await out.get("/Observation", params={"code": f"{LOINC}|{code}"})
        entries = found.json().get("entry", [])
        assert len(entries) <= 1, entries
        return entries[0]["resource"] if entries and check(entries[0]["resource"]) else None

    return poll


async def test_a_screening_at_intake_gives_outcomes_its_baselines(
    kafka_broker: Broker, topic_prefix: str, new_database: Callable[[str], str]
):
    async with programme(kafka_broker, topic_prefix, new_database) as (intake, _, outcomes):
        front, out = intake.client, outcomes.client
        patient_id = await new_patient(front)
        body = screening(patient_id, phq9=(2,) * 9, pcl5=(1,) * 20)
        created = await front.post("/QuestionnaireResponse", json=body)
        assert created.status_code == 201, created.text
        response = created.json()
        path = f"QuestionnaireResponse/{response['id']}"

        phq9 = await eventually(_when(out, PHQ9, lambda o: True), what="the PHQ-9 total")
        assert (phq9["valueInteger"], phq9["status"]) == (18, "final")
        assert phq9["subject"] == {"reference": f"Patient/{patient_id}"}
        assert phq9["derivedFrom"] == [{"reference": f"{path}/_history/1"}]
        pcl5 = await eventually(_when(out, PCL5, lambda o: True), what="the PCL-5 total")
        assert pcl5["valueInteger"] == 20

        # Amended at intake with one PHQ-9 item left out: prorated, 18 x 9 / 8 = 20.25.
        amended = screening(patient_id, phq9=(3, 3, 3, 3, 3, 1, 1, 1, None), pcl5=(1,) * 20)
        amended.update(id=response["id"], status="amended")
        put = await front.put(f"/{path}", json=amended)
        assert put.status_code == 200, put.text
        phq9 = await eventually(
            _when(out, PHQ9, lambda o: o["derivedFrom"][0]["reference"].endswith("/2")),
            what="the amended PHQ-9 total",
        )
        assert (phq9["valueInteger"], phq9["status"]) == (20, "amended")
        assert phq9["method"]["coding"][0]["code"] == "item-sum-prorated"

        # Deleted at intake: both totals withdrawn.
        deleted = await front.delete(f"/{path}")
        assert deleted.status_code in (200, 204), deleted.text
        for code in (PHQ9, PCL5):
            withdrawn = _when(out, code, lambda o: o["status"] == "entered-in-error")
            await eventually(withdrawn, what=f"{code} withdrawn")
