"""AuditEvents reach the SIEM topic `<prefix>AuditEvent` through the outbox (real broker)."""

from __future__ import annotations

from collections.abc import Callable

from tests import kafka_support
from tests.auth_support import acting_as, bearer, principal
from tests.factories import patient
from tests.kafka_support import payloads, read_topic, running
from tooling.broker import Broker

kafka_broker = kafka_support.kafka_broker
topic_prefix = kafka_support.topic_prefix
new_database = kafka_support.new_database


async def test_write_and_read_audit_events_are_published(
    kafka_broker: Broker, topic_prefix: str, new_database: Callable[[str], str]
):
    settings = {"kafka_bootstrap_servers": kafka_broker.bootstrap, "topic_prefix": topic_prefix}
    async with running("intake", new_database("intake"), **settings) as intake:
        siem = bearer(client_id="siem-test", sub="siem-test")
        with acting_as(principal(client_id="siem-test")):
            created = await intake.client.post("/Patient", json=patient(), headers=siem)
            assert created.status_code == 201, created.text
            pid = created.json()["id"]
            assert (await intake.client.get(f"/Patient/{pid}", headers=siem)).status_code == 200
        # The write's record rides in its transaction; the read's comes via the spool drainer.
        # (The others record the service's own publications at start: the screening
        # Questionnaire and the contraindication and PCL-5 answer CodeSystems.)
        records = await read_topic(kafka_broker.bootstrap, f"{topic_prefix}AuditEvent", count=5)
    events = [
        p["data"]
        for p in payloads(records)
        if any(
            e.get("what", {}).get("reference", "").endswith(f"Patient/{pid}")
            for e in p["data"].get("entity", [])
        )
    ]
    assert sorted(e["action"] for e in events) == ["C", "R"]
    assert all(e["resourceType"] == "AuditEvent" for e in events)
