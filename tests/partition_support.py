"""Several consumer processes of one service on a partitioned topic: the events an owner
would publish, the processes, and what the shared database says they applied."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass

import httpx
from aiokafka import AIOKafkaProducer
from sqlalchemy import text

from shared.db.engine import Database
from shared.events import kafka
from shared.events.envelope import ResourceEvent, with_sequence
from shared.events.relay import partition_of
from shared.settings import ServiceSettings
from tests.auth_support import process_auth, staff_headers
from tooling.service_process import ServiceProcess

SERVICE = "scheduling"  # a consumer of intake's Patients


@dataclass(frozen=True)
class Published:
    """One event as the owner's relay publishes it."""

    event_id: str
    res_id: str
    version: int
    partition: int
    value: bytes


def patient_versions(resources: int, versions: int, partitions: int) -> list[Published]:
    """`resources` Patients with `versions` versions each, in the order an owner writes them
    (version 1 of all, then version 2...), numbered per partition as the relay numbers them."""
    ids = [str(uuid.uuid4()) for _ in range(resources)]
    counters = [0] * partitions
    out = []
    for version in range(1, versions + 1):
        for index, res_id in enumerate(ids):
            when = f"2026-12-01T10:{version:02d}:{index % 60:02d}.000000Z"
            resource = {
                "resourceType": "Patient",
                "id": res_id,
                "meta": {"versionId": str(version), "lastUpdated": when},
                "name": [{"family": f"Scale{index}", "given": [f"v{version}"]}],
                "gender": "female",
                "birthDate": "1980-05-17",
            }
            event = ResourceEvent.model_construct(
                specversion="1.0",
                id=str(uuid.uuid4()),
                source="urn:kemdr:intake",
                type="fhir.Patient.created" if version == 1 else "fhir.Patient.updated",
                subject=f"Patient/{res_id}",
                time=when,
                datacontenttype="application/fhir+json",
                versionid=str(version),
                sequence=None,
                data=resource,
                dataomitted=None,
            )
            partition = partition_of(event.subject, partitions)
            counters[partition] += 1
            value = with_sequence(event.to_json(), counters[partition])
            out.append(Published(event.id, res_id, version, partition, value))
    return out


async def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    """The topic with `partitions` partitions (and its dead-letter topic)."""
    settings = ServiceSettings(kafka_bootstrap_servers=bootstrap, topic_partitions=partitions)
    await kafka.ensure_topics(settings, [topic, f"{topic}.dlq"])


async def publish(bootstrap: str, topic: str, events: list[Published], per_s: float) -> None:
    """Send the events at about `per_s` (0: as fast as possible), keyed as the relay keys."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=2)
    await producer.start()
    try:
        started = time.monotonic()
        for i, event in enumerate(events):
            await producer.send(
                topic,
                key=f"Patient/{event.res_id}".encode(),
                value=event.value,
                partition=event.partition,
                headers=[("ce_id", event.event_id.encode())],
            )
            if per_s:
                ahead = started + i / per_s - time.monotonic()
                if ahead > 0:
                    await asyncio.sleep(ahead)
        await producer.flush()
    finally:
        await producer.stop()


def consumer_process(database_url: str, bootstrap: str, prefix: str, partitions: int):  # type: ignore[no-untyped-def]
    """One replica consumer process of the service (no relay, no start-up catch-up)."""
    return ServiceProcess(
        SERVICE,
        env={"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "KAFKA_SESSION_TIMEOUT_MS": "1500"},
        database_url=database_url,
        migrate_on_start="false",
        topic_prefix=prefix,
        topic_partitions=str(partitions),
        relay_in_process="false",
        resync_on_start="false",
        reconcile_interval_s="0",
        **process_auth(),
    )


def group(prefix: str) -> str:
    return f"{prefix}{SERVICE}-replicas"


def applied(database: Database, prefix: str) -> int:
    """Events the service's consumer group has recorded as processed."""
    with database.read() as session:
        return session.execute(
            text("SELECT count(*) FROM processed_events WHERE consumer = :c"), {"c": group(prefix)}
        ).scalar_one()


def assigned(process: ServiceProcess, topic: str) -> set[int]:
    """The partitions of `topic` the process consumes now (from its status)."""
    try:
        status = httpx.get(f"{process.url}/status/events", headers=staff_headers(), timeout=5)
        lag = (status.json().get("consumer") or {}).get("lag") or {}
    except (httpx.HTTPError, ValueError):
        return set()
    return {int(key[len(topic) + 1 : -1]) for key in lag if key.startswith(f"{topic}[")}
