"""A broker outage loses nothing: writes go on, events leave once the broker is back."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from tests import kafka_support
from tests.factories import patient
from tests.kafka_support import eventually, payloads, read_topic, running
from tooling.broker import Broker

topic_prefix = kafka_support.topic_prefix
new_database = kafka_support.new_database
own_broker = kafka_support.own_broker


async def _version(client: httpx.AsyncClient, path: str) -> str | None:
    response = await client.get(path)
    return response.json()["meta"]["versionId"] if response.status_code == 200 else None


async def test_a_write_while_the_broker_is_down_is_delivered_once_it_is_back(
    own_broker: Broker, topic_prefix: str, new_database: Callable[[str], str]
):
    settings = {"kafka_bootstrap_servers": own_broker.bootstrap, "topic_prefix": topic_prefix}
    async with (
        running("intake", new_database("intake"), **settings) as intake,
        running("scheduling", new_database("scheduling"), **settings) as scheduling,
    ):
        before = (await intake.client.post("/Patient", json=patient("Before"))).json()["id"]

        async def replicated(pid: str, version: str = "1") -> bool:
            return await _version(scheduling.client, f"/Patient/{pid}") == version

        await eventually(lambda: replicated(before), what="the first patient replicated")

        own_broker.stop()
        during = await intake.client.post("/Patient", json=patient("During"))
        assert during.status_code == 201, during.text
        during_id = during.json()["id"]
        updated = await intake.client.put(
            f"/Patient/{before}", json={**patient("Renamed"), "id": before}
        )
        assert updated.status_code == 200
        status = (await intake.client.get("/../status/events")).json()["relay"]
        # Kept in the outbox, not lost (each write with its AuditEvent).
        assert status["pending"] == 2 * 2

        own_broker.start()  # the same port, every message gone
        await eventually(
            lambda: replicated(during_id), timeout=40, what="the write made while down replicated"
        )
        await eventually(lambda: replicated(before, "2"), timeout=20, what="the update replicated")
        after = (await intake.client.post("/Patient", json=patient("After"))).json()["id"]
        await eventually(lambda: replicated(after), what="a write after the outage replicated")

        records = await read_topic(own_broker.bootstrap, f"{topic_prefix}Patient", count=3)
        # The restarted broker holds what was written from the outage on, in order. Delivery
        # is at least once: a send the broker acknowledged and then dropped goes again, so an
        # event may repeat (consumers skip it by its id), but none is missing.
        events = {}
        for event in payloads(records):
            assert events.setdefault(event["id"], event) == event
        seen = [(e["subject"], e["versionid"]) for e in events.values()]
        assert sorted(seen) == sorted(
            [(f"Patient/{during_id}", "1"), (f"Patient/{before}", "2"), (f"Patient/{after}", "1")]
        )
        # Order is promised per resource (the key), not across resources: a send re-made after
        # the broker dropped an acknowledged batch may land after a later resource's event.
        for subject in {s for s, _ in seen}:
            versions = [int(v) for s, v in seen if s == subject]
            assert versions == sorted(versions)

        async def nothing_pending() -> bool:
            status = (await intake.client.get("/../status/events")).json()["relay"]
            return status["pending"] == 0

        # Rows are marked sent a moment after the broker's ack that consumers may already see.
        await eventually(nothing_pending, what="the outbox marked sent")
        assert (await scheduling.client.get(f"/Patient/{before}")).json() == updated.json()
