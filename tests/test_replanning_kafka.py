"""End to end through a real broker: intake's episode leaving active, as published, cancels
the patient's future sessions; the cancellation goes out as the Appointment's own event."""

from __future__ import annotations

from collections.abc import Callable

from tests import kafka_support
from tests.dosing_support import clinician
from tests.kafka_support import eventually, payloads, produce, read_topic, running
from tests.replanning_support import episode, replica_event, session
from tooling.broker import Broker

kafka_broker = kafka_support.kafka_broker
topic_prefix = kafka_support.topic_prefix
new_database = kafka_support.new_database


async def test_an_episode_event_from_the_broker_cancels_and_publishes(
    kafka_broker: Broker, topic_prefix: str, new_database: Callable[[str], str]
):
    settings = {"kafka_bootstrap_servers": kafka_broker.bootstrap, "topic_prefix": topic_prefix}
    async with running("scheduling", new_database("scheduling"), **settings) as scheduling:
        client = scheduling.client
        booked = await client.post("/Appointment", json=session("p1", "emdr"), headers=clinician())
        assert booked.status_code == 201, booked.text
        path = f"/Appointment/{booked.json()['id']}"
        await eventually(lambda: scheduling.events.consumer.status.connected)
        events = [
            replica_event("EpisodeOfCare", "e1", 1, episode("p1", "active")),
            replica_event("EpisodeOfCare", "e1", 2, episode("p1", "waitlist")),
        ]
        await produce(
            kafka_broker.bootstrap,
            f"{topic_prefix}EpisodeOfCare",
            [(b"EpisodeOfCare/e1", e.to_json().encode(), []) for e in events],
        )

        async def cancelled() -> bool:
            return (await client.get(path)).json()["status"] == "cancelled"

        await eventually(cancelled, what="the session cancelled by the episode's event")
        reason = (await client.get(path)).json()["cancelationReason"]["text"]
        assert reason == "Enrolment left active: waitlist (treatment consent withdrawn)"
        records = await read_topic(kafka_broker.bootstrap, f"{topic_prefix}Appointment", count=2)
        published = payloads(records)
        assert [e["type"] for e in published] == [
            "fhir.Appointment.created",
            "fhir.Appointment.updated",
        ]
        assert published[-1]["data"]["status"] == "cancelled"
