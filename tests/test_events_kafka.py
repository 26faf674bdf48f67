"""Events through a real (Tansu) broker: relay, replica consumer, DLQ, dedupe, catch-up."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest
from aiokafka.structs import TopicPartition
from sqlalchemy import func, select, text

from shared.db.engine import Database
from shared.db.models import ProcessedEvent, VersionRow
from shared.events import kafka
from shared.events.consumer import ConsumerRunner
from shared.events.envelope import ResourceEvent, build_event
from shared.events.relay import OutboxRelay
from shared.fhir.dates import utcnow
from shared.fhir.store import Stored
from tests import kafka_support
from tests.factories import patient
from tests.kafka_support import (
    build_app,
    eventually,
    headers_of,
    payloads,
    produce,
    read_topic,
    running,
    snapshot,
)
from tooling.broker import Broker

# The shared fixtures, under their own names.
kafka_broker = kafka_support.kafka_broker
topic_prefix = kafka_support.topic_prefix
new_database = kafka_support.new_database
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
# Scheduling also replicates EpisodeOfCare, Consent, QuestionnaireResponse and Observation, which
# these tests leave empty.
NOTHING_ELSE = {"EpisodeOfCare": 0, "Consent": 0, "QuestionnaireResponse": 0, "Observation": 0}


def _settings(broker: Broker, prefix: str, **extra: Any) -> dict[str, Any]:
    return {"kafka_bootstrap_servers": broker.bootstrap, "topic_prefix": prefix, **extra}


async def _replica_version(client: httpx.AsyncClient, path: str) -> str | int | None:
    """The replica's versionId of a resource, 410 when deleted, None when unknown."""
    response = await client.get(path)
    if response.status_code == 410:
        return 410
    if response.status_code != 200:
        return None
    return response.json()["meta"]["versionId"]


def _event(res_id: str, version: int, *, deleted: bool = False, **extra: Any) -> bytes:
    resource = None if deleted else {**patient(), "id": res_id, **extra}
    if resource is not None:
        resource["meta"] = {"versionId": str(version), "lastUpdated": "2026-01-01T00:00:00Z"}
    stored = Stored("Patient", res_id, version, utcnow(), deleted, resource, "PUT")
    return build_event(stored, source="urn:test", max_data_bytes=1 << 20).to_json().encode()


# ---- publishing ----------------------------------------------------------------------------
async def test_relay_publishes_envelopes_keys_and_headers_in_order(
    kafka_broker: Broker, topic_prefix: str, new_database: Callable[[str], str]
):
    settings = _settings(kafka_broker, topic_prefix)
    async with running("intake", new_database("intake"), **settings) as intake:
        created = await intake.client.post(
            "/Patient", json=patient(), headers={"traceparent": TRACEPARENT}
        )
        assert created.status_code == 201, created.text
        pid = created.json()["id"]
        updated = await intake.client.put(f"/Patient/{pid}", json={**patient("Two"), "id": pid})
        assert updated.status_code == 200
        assert (await intake.client.delete(f"/Patient/{pid}")).status_code in (200, 204)

        records = await read_topic(kafka_broker.bootstrap, f"{topic_prefix}Patient", count=3)
        assert len(records) == 3  # exactly one message per change
        events = payloads(records)
        assert [(e["type"], e["versionid"]) for e in events] == [
            ("fhir.Patient.created", "1"),
            ("fhir.Patient.updated", "2"),
            ("fhir.Patient.deleted", "3"),
        ]
        assert events[0]["data"] == created.json()
        assert events[1]["data"] == updated.json()
        assert "data" not in events[2]
        for record, event in zip(records, events, strict=True):
            assert record.key == f"Patient/{pid}".encode()
            headers = headers_of(record)
            assert headers["ce_id"] == event["id"].encode()
            assert headers["ce_type"] == event["type"].encode()
            assert len(headers["traceparent"]) == 55
        assert headers_of(records[0])["traceparent"] == TRACEPARENT.encode()
        assert headers_of(records[1])["traceparent"] != TRACEPARENT.encode()

        # The relay marks rows sent only after the broker's ack and a topic check, so a
        # consumer can see the records a moment before the outbox says so.
        async def relay_status() -> dict:
            status = (await intake.client.get("/../status/events")).json()
            assert status["relay"]["pending"] == 0
            return status

        status = await eventually(relay_status, what="the outbox marked sent")
        assert status["enabled"] is True
        # Each write's AuditEvent rides along; intake's start published its screening
        # Questionnaire and two CodeSystems (and their AuditEvents) first.
        assert status["relay"]["published"] == 3 * 2 + 3 * 2
        assert status["consumer"] is None  # intake replicates nothing


async def test_a_rolled_back_transaction_bundle_publishes_nothing(
    kafka_broker: Broker, topic_prefix: str, new_database: Callable[[str], str]
):
    settings = _settings(kafka_broker, topic_prefix)
    async with running("intake", new_database("intake"), **settings) as intake:
        failing = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {"resource": patient("Ghost"), "request": {"method": "POST", "url": "Patient"}},
                {"request": {"method": "DELETE", "url": "Patient/never-there"}},
                {
                    "resource": {**patient(), "id": "x"},
                    "request": {"method": "PUT", "url": "Patient/x", "ifMatch": 'W/"3"'},
                },
            ],
        }
        response = await intake.client.post("/", json=failing)
        assert response.status_code >= 400, response.text
        # A later committed write is published; it must be the topic's only message.
        marker = await intake.client.post("/Patient", json=patient("Marker"))
        assert marker.status_code == 201
        records = await read_topic(kafka_broker.bootstrap, f"{topic_prefix}Patient", count=1)
        assert [e["subject"] for e in payloads(records)] == [f"Patient/{marker.json()['id']}"]


# ---- consuming -----------------------------------------------------------------------------
async def test_replicas_follow_the_owner_and_id_only_events_are_fetched(
    kafka_broker: Broker, topic_prefix: str, new_database: Callable[[str], str]
):
    """Small resources travel inline, oversized ones id-only and are read from the owner."""
    settings = _settings(kafka_broker, topic_prefix)
    async with (
        running("intake", new_database("intake"), event_max_data_bytes=600, **settings) as intake,
        running(
            "scheduling", new_database("scheduling"), owners={"intake": intake}, **settings
        ) as scheduling,
    ):
        small = (await intake.client.post("/Patient", json=patient())).json()
        bulky = {"address": [{"text": "x" * 2000}]}
        big = (await intake.client.post("/Patient", json=patient("Big", **bulky))).json()
        for resource in (small, big):
            path = f"/Patient/{resource['id']}"
            await eventually(
                _equals(lambda p=path: _replica_version(scheduling.client, p), "1"),
                what=f"{path} replicated",
            )
            replica = await scheduling.client.get(path)
            assert replica.status_code == 200
            assert replica.json() == resource  # the owner's versionId and lastUpdated
        records = await read_topic(kafka_broker.bootstrap, f"{topic_prefix}Patient", count=2)
        assert [e.get("dataomitted", False) for e in payloads(records)] == [False, True]

        updated = await intake.client.put(
            f"/Patient/{big['id']}", json={**patient("Bigger", **bulky), "id": big["id"]}
        )
        assert updated.status_code == 200
        assert (await intake.client.delete(f"/Patient/{small['id']}")).status_code in (200, 204)

        async def caught_up() -> bool:
            return (
                await _replica_version(scheduling.client, f"/Patient/{big['id']}") == "2"
                and await _replica_version(scheduling.client, f"/Patient/{small['id']}") == 410
            )

        await eventually(caught_up, what="the update and the delete replicated")
        replica = await scheduling.client.get(f"/Patient/{big['id']}")
        assert replica.json() == updated.json()
        # The replica's search index follows too.
        found = await scheduling.client.get("/Patient", params={"family": "Bigger"})
        assert [e["resource"]["id"] for e in found.json()["entry"]] == [big["id"]]


async def test_a_thousand_rapid_updates_arrive_and_apply_in_version_order(
    kafka_broker: Broker, topic_prefix: str, new_database: Callable[[str], str]
):
    settings = _settings(kafka_broker, topic_prefix)
    async with (
        running("intake", new_database("intake"), **settings) as intake,
        running("scheduling", new_database("scheduling"), **settings) as scheduling,
    ):
        pid = (await intake.client.post("/Patient", json=patient())).json()["id"]
        # Two writers, one commit per update, straight through the interactions (the HTTP
        # layer would only slow this down): the row lock orders the versions, the outbox
        # and the relay must keep that order.
        context = intake.app.state.fhir

        def writer(names: range) -> list[int]:
            versions = []
            for n in names:
                body = {**patient(given=f"G{n}"), "id": pid}
                with context.database.write() as session:
                    result = context.interactions.update(
                        session, "Patient", pid, body, if_match=None
                    )
                # (The unit of work wakes the relay after each commit.)
                versions.append(result.stored.version_id)
            return versions

        done = await asyncio.gather(
            asyncio.to_thread(writer, range(0, 1000, 2)),
            asyncio.to_thread(writer, range(1, 1000, 2)),
        )
        assert sorted(done[0] + done[1]) == list(range(2, 1002))
        assert all(a < b for a, b in zip(done[0], done[0][1:], strict=False))
        response = await intake.client.get(f"/Patient/{pid}")
        assert response.json()["meta"]["versionId"] == "1001"
        await eventually(
            _equals(lambda: _replica_version(scheduling.client, f"/Patient/{pid}"), "1001"),
            timeout=60,
            what="version 1001 replicated",
        )
        records = await read_topic(kafka_broker.bootstrap, f"{topic_prefix}Patient", count=1001)
        # Arrived in version order (one partition; the key keeps a resource on one).
        assert [int(e["versionid"]) for e in payloads(records)] == list(range(1, 1002))
        # Applied in version order: the replica stored every version, oldest first.
        with scheduling.database.read() as session:
            stored = session.execute(
                select(VersionRow.version_id)
                .where(VersionRow.res_type == "Patient", VersionRow.res_id == pid)
                .order_by(VersionRow.pk)
            ).scalars()
            assert list(stored) == list(range(1, 1002))
        final = await scheduling.client.get(f"/Patient/{pid}")
        assert final.json() == response.json()


class _ByHost(httpx.AsyncBaseTransport):
    """Sends each request to the in-process app named by its host."""

    def __init__(self, **apps: httpx.AsyncBaseTransport) -> None:
        self.apps = apps

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self.apps[request.url.host].handle_async_request(request)


def _equals(check: Callable[[], Any], expected: Any) -> Callable[[], Any]:
    async def compare() -> bool:
        return await check() == expected

    return compare


async def test_poison_and_failing_messages_go_to_the_dlq_and_later_ones_are_processed(
    kafka_broker: Broker, topic_prefix: str, new_database: Callable[[str], str]
):
    settings = _settings(
        kafka_broker,
        topic_prefix,
        consumer_max_attempts=3,
        consumer_backoff_seconds=0.01,
        # An id-only event whose owner cannot be reached fails every attempt.
        peer_urls=dict.fromkeys(("intake", "outcomes"), "http://127.0.0.1:9/fhir"),
    )
    topic = f"{topic_prefix}Patient"
    async with running("scheduling", new_database("scheduling"), **settings) as scheduling:
        # Produce once the consumer made its topics (anyone else's would get 4 partitions).
        await eventually(lambda: scheduling.events.consumer.status.connected)
        omitted = orjson.loads(_event("p2", 1))
        del omitted["data"]
        omitted["dataomitted"] = True
        await produce(
            kafka_broker.bootstrap,
            topic,
            [
                (b"Patient/p0", b"\x00 not an event", [("ce_id", b"junk")]),
                (b"Patient/p2", orjson.dumps(omitted), []),
                (b"Patient/p1", _event("p1", 1), []),
                (b"Patient/p1", _event("p1", 2, gender="female"), []),
            ],
        )
        await eventually(
            _equals(lambda: _replica_version(scheduling.client, "/Patient/p1"), "2"),
            what="the message after the poison applied",
        )
        assert (await scheduling.client.get("/Patient/p1")).json()["gender"] == "female"
        assert (await scheduling.client.get("/Patient/p2")).status_code == 404

        dead = await read_topic(kafka_broker.bootstrap, f"{topic}.dlq", count=2)
        assert len(dead) == 2
        poison, failed = dead
        assert poison.value == b"\x00 not an event" and poison.key == b"Patient/p0"
        headers = headers_of(poison)
        assert headers["dlq_error"].startswith(b"poison: not JSON")
        assert headers["dlq_attempts"] == b"1"
        assert headers["dlq_source_topic"] == topic.encode()
        assert headers["dlq_source_offset"] == b"0"
        assert headers["ce_id"] == b"junk"  # the original headers are kept
        headers = headers_of(failed)
        assert headers["dlq_attempts"] == b"3"
        assert b"ConnectError" in headers["dlq_error"]
        assert headers["dlq_source_offset"] == b"1"

        async def settled() -> dict[str, Any] | None:
            status = (await scheduling.client.get("/../status/events")).json()["consumer"]
            return status if status["lag"] and status["totalLag"] == 0 else None

        status = await eventually(settled, what="the lag back to 0")
        assert status["deadLettered"] == 2
        assert status["dlq"] == {f"{topic}.dlq": 2}
        assert status["processed"] == 2
        assert status["retries"] == 2
        # Scheduling also follows its other replicated types' topics (empty here).
        assert status["lag"][f"{topic}[0]"] == 0
        assert set(status["lag"]) == {f"{topic_prefix}{t}[0]" for t in ("Patient", *NOTHING_ELSE)}
        assert status["group"] == f"{topic_prefix}scheduling-replicas"
        assert status["connected"] is True


class _CrashAfterCommit(ConsumerRunner):
    """Dies (hangs until killed) right after its first database commit, before the offset."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.committed_once = asyncio.Event()

    async def handle(self, message, dlq):  # type: ignore[no-untyped-def]
        done = await super().handle(message, dlq)
        self.committed_once.set()
        await asyncio.Event().wait()  # never returns: the offset commit never happens
        return done


async def test_a_consumer_killed_between_database_and_offset_commit_reprocesses_once(
    kafka_broker: Broker, topic_prefix: str, new_database: Callable[[str], str]
):
    from services.scheduling.app import SchedulingSettings

    settings = SchedulingSettings(
        kafka_bootstrap_servers=kafka_broker.bootstrap, topic_prefix=topic_prefix
    )
    database = Database(new_database("consumer"))
    with database.write() as session:  # a deliberately non-idempotent effect
        session.execute(text("CREATE TABLE effects (event_id TEXT NOT NULL)"))

    def effect(session: Any, event: ResourceEvent) -> None:
        session.execute(text("INSERT INTO effects VALUES (:e)"), {"e": event.id})

    topic = f"{topic_prefix}Patient"
    group = f"{topic_prefix}effects"
    messages = [_event("p1", 1), _event("p1", 2), _event("p2", 1)]
    await kafka.ensure_topics(settings, [topic])
    await produce(kafka_broker.bootstrap, topic, [(b"k", m, []) for m in messages])

    def effects() -> list[str]:
        with database.read() as session:
            return list(session.execute(text("SELECT event_id FROM effects")).scalars())

    crashing = _CrashAfterCommit(settings, database, {topic: effect}, name=group)
    task = asyncio.create_task(crashing.run())
    try:
        await asyncio.wait_for(crashing.committed_once.wait(), timeout=20)
        assert len(effects()) == 1  # the database transaction committed
    finally:
        task.cancel()  # killed: no graceful stop, no offset commit
        with contextlib.suppress(asyncio.CancelledError):
            await task
    probe = kafka.consumer(settings, group=group)
    await probe.start()
    try:
        assert await probe.committed(TopicPartition(topic, 0)) is None
    finally:
        await probe.stop()

    restarted = ConsumerRunner(settings, database, {topic: effect}, name=group)
    task = asyncio.create_task(restarted.run())
    try:
        await eventually(
            lambda: restarted.status.processed + restarted.status.duplicates == 3,
            what="all three messages handled after the restart",
        )
    finally:
        restarted.stop()
        await asyncio.wait_for(task, timeout=10)
    assert restarted.status.duplicates == 1
    assert restarted.status.processed == 2
    ids = [orjson.loads(m)["id"] for m in messages]
    assert sorted(effects()) == sorted(ids)  # each effect exactly once
    with database.read() as session:
        rows = session.execute(
            select(func.count()).select_from(ProcessedEvent).where(ProcessedEvent.consumer == group)
        ).scalar_one()
    assert rows == 3
    # The graceful stop committed the offset after the last message.
    probe = kafka.consumer(settings, group=group)
    await probe.start()
    try:
        assert await probe.committed(TopicPartition(topic, 0)) == 3
    finally:
        await probe.stop()
    database.dispose()


async def test_replicas_rebuilt_by_replay_and_resynced_over_history_equal_the_live_one(
    kafka_broker: Broker, topic_prefix: str, new_database: Callable[[str], str]
):
    settings = _settings(kafka_broker, topic_prefix)
    async with (
        running("intake", new_database("intake"), **settings) as intake,
        running("scheduling", new_database("live"), **settings) as live,
    ):
        ids = []
        for n in range(6):
            created = await intake.client.post("/Patient", json=patient(f"F{n}"))
            ids.append(created.json()["id"])
        for pid in ids[:3]:
            await intake.client.put(f"/Patient/{pid}", json={**patient("Moved"), "id": pid})
        await intake.client.delete(f"/Patient/{ids[0]}")
        await intake.client.delete(f"/Patient/{ids[4]}")
        last = await intake.client.put(f"/Patient/{ids[1]}", json={**patient(), "id": ids[1]})
        assert last.json()["meta"]["versionId"] == "3"

        await eventually(
            _equals(lambda: _replica_version(live.client, f"/Patient/{ids[1]}"), "3"),
            what="the live replica caught up",
        )
        await eventually(
            _equals(lambda: _replica_version(live.client, f"/Patient/{ids[4]}"), 410),
            what="the live replica caught up",
        )
        expected = snapshot(live.database, "Patient")
        assert len(expected["current"]) == 6
        assert len(expected["versions"]) == 6 + 3 + 2 + 1

        # Rebuilt by replaying the topic from offset 0 (into a replica holding stale junk).
        replayed = build_app("scheduling", new_database("replayed"), **settings)
        events = replayed.state.events
        with replayed.state.fhir.database.write() as session:
            events.writer.put_version(session, "Patient", "stale", 1, {**patient(), "id": "stale"})
        assert await events.replay_all() == {"Patient": 12, **NOTHING_ELSE}
        assert snapshot(replayed.state.fhir.database, "Patient") == expected

        # Resynchronised over the owner's _history, from nothing, then incrementally.
        resynced = build_app(
            "scheduling",
            new_database("resynced"),
            peer_urls={"intake": "http://intake/fhir", "outcomes": "http://outcomes/fhir"},
            **settings,
        )
        # Each owner answers for its types: intake for Patient, an outcomes app (empty) for
        # the Observations scheduling also replicates.
        outcomes = build_app("outcomes", new_database("outcomes"), **settings)
        resynced.state.events.http_transport = _ByHost(
            intake=intake.transport(), outcomes=httpx.ASGITransport(app=outcomes)
        )
        assert await resynced.state.events.resync_all() == {"Patient": 12, **NOTHING_ELSE}
        assert snapshot(resynced.state.fhir.database, "Patient") == expected

        await intake.client.put(f"/Patient/{ids[5]}", json={**patient("Later"), "id": ids[5]})
        await intake.client.delete(f"/Patient/{ids[3]}")
        assert await resynced.state.events.resync_all() == {"Patient": 2, **NOTHING_ELSE}
        await eventually(
            _equals(lambda: _replica_version(live.client, f"/Patient/{ids[3]}"), 410),
            what="the live replica caught up again",
        )
        assert snapshot(resynced.state.fhir.database, "Patient") == snapshot(
            live.database, "Patient"
        )
        for app in (replayed, resynced, outcomes):
            app.state.fhir.database.dispose()


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_one_relay_per_postgres_database_publishes_and_another_takes_over(
    kafka_broker: Broker, topic_prefix: str, database_url: str
):
    settings = _settings(kafka_broker, topic_prefix, relay_in_process=False)
    async with running("intake", database_url, **settings) as intake:
        first = intake.events.relay
        second = OutboxRelay(first.settings, Database(database_url), first.topics)
        tasks = [asyncio.create_task(r.run(poll_seconds=0.1)) for r in (first, second)]
        try:
            await eventually(
                lambda: first.status.leader or second.status.leader, what="a leader elected"
            )
            for n in range(5):
                assert (
                    await intake.client.post("/Patient", json=patient(f"N{n}"))
                ).status_code == 201
            topic = f"{topic_prefix}Patient"
            records = await read_topic(kafka_broker.bootstrap, topic, count=5)
            assert len(records) == 5  # published once, by one relay
            assert [first.status.leader, second.status.leader].count(True) == 1
            await eventually(
                # Each write's AuditEvent is published with it.
                # (plus the Questionnaire and two CodeSystems intake published at start, and
                # their records)
                lambda: first.status.published + second.status.published == 5 * 2 + 3 * 2,
                what="the rows marked sent",
            )

            leader, other = (first, second) if first.status.leader else (second, first)
            leader.stop()
            await asyncio.wait_for(tasks[(first, second).index(leader)], timeout=10)
            assert (await intake.client.post("/Patient", json=patient("Later"))).status_code == 201
            records = await read_topic(kafka_broker.bootstrap, topic, count=6, timeout=30)
            assert len(records) == 6
            # The record reaches the topic before the relay marks its row sent and counts it.
            await eventually(
                lambda: other.status.leader and other.status.published >= 1,
                what="the new leader counted what it published",
            )
        finally:
            for relay in (first, second):
                relay.stop()
            await asyncio.wait_for(asyncio.gather(*tasks), timeout=10)
            second.database.dispose()
