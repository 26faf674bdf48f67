"""Three consumer processes of one service share a six-partition topic through their group;
one is killed mid-stream, and every event is still applied exactly once, in order per resource."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections import defaultdict

import httpx
import pytest
from sqlalchemy import text

from shared.db.engine import Database
from tests.auth_support import staff_headers
from tests.kafka_support import kafka_broker  # noqa: F401  (fixture)
from tests.partition_support import (
    applied,
    assigned,
    consumer_process,
    create_topic,
    group,
    patient_versions,
    publish,
)
from tooling.broker import Broker
from tooling.service_process import ServiceProcess

PARTITIONS = 6
RESOURCES, VERSIONS = 60, 10


@pytest.mark.timeout(240)
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_a_consumer_killed_mid_stream_loses_and_repeats_nothing(
    kafka_broker: Broker,  # noqa: F811
    database_url: str,
) -> None:
    begun = time.monotonic()
    prefix = f"s{uuid.uuid4().hex[:8]}."
    topic = f"{prefix}Patient"
    await create_topic(kafka_broker.bootstrap, topic, PARTITIONS)
    events = patient_versions(RESOURCES, VERSIONS, PARTITIONS)
    database = Database(database_url)
    processes = [
        consumer_process(database_url, kafka_broker.bootstrap, prefix, PARTITIONS) for _ in range(3)
    ]
    try:
        await asyncio.gather(*(asyncio.to_thread(p.start) for p in processes))
        setup = time.monotonic()
        # The group has settled when the three share all six partitions.
        deadline = time.monotonic() + 30
        while True:
            held = [await asyncio.to_thread(assigned, p, topic) for p in processes]
            if set().union(*held) == set(range(PARTITIONS)) and all(held):
                break
            assert time.monotonic() < deadline, f"the group never settled: {held}"
            await asyncio.sleep(0.2)

        started = time.monotonic()
        print(f"started in {setup - begun:.1f} s, settled in {started - setup:.1f} s")
        producing = asyncio.create_task(publish(kafka_broker.bootstrap, topic, events, 150))
        while applied(database, prefix) < len(events) // 4:
            assert time.monotonic() - started < 30, "the consumers never got going"
            await asyncio.sleep(0.05)
        victim = processes[1]
        os.kill(victim.pid, signal.SIGKILL)  # no graceful stop: in-flight work is cut off
        killed = time.monotonic()
        print(f"killed {victim.pid} {killed - started:.1f} s after the first was sent")
        await producing
        shown = 0.0
        while applied(database, prefix) < len(events):
            if time.monotonic() - shown > 2:  # shown when the test fails
                shown = time.monotonic()
                print(f"{shown - killed:.1f} s after the kill: {applied(database, prefix)}")
            assert time.monotonic() - started < 90, (
                f"{applied(database, prefix)} of {len(events)} applied after 90 s; "
                + "\n".join(_diagnosis(p) for p in processes if p.alive())
            )
            await asyncio.sleep(0.1)
        print(f"all applied {time.monotonic() - started:.1f} s after the first was sent")
        # The survivors took the victim's partitions over.
        survivors = [await asyncio.to_thread(assigned, p, topic) for p in processes[::2]]
        assert set().union(*survivors) == set(range(PARTITIONS))
        await asyncio.sleep(1)  # anything applied twice would show up by now

        with database.read() as session:
            processed = list(
                session.execute(
                    text("SELECT event_id, processed_at FROM processed_events WHERE consumer = :c"),
                    {"c": group(prefix)},
                )
            )
            current = dict(
                session.execute(
                    text("SELECT res_id, version_id FROM resources WHERE res_type = 'Patient'")
                ).all()
            )
            progress = {
                row.partition: (row.contiguous, row.seen_above)
                for row in session.execute(
                    text(
                        "SELECT partition, contiguous, seen_above FROM replica_progress "
                        "WHERE topic = :t"
                    ),
                    {"t": topic},
                )
            }
    finally:
        for process in processes:
            await asyncio.to_thread(process.stop)
        database.dispose()

    # Exactly once: each event has one processed row (the key forbids two), none is missing.
    assert sorted(event_id for event_id, _ in processed) == sorted(e.event_id for e in events)
    # Every replica at its newest version.
    assert current == {e.res_id: VERSIONS for e in events}
    # Per resource, versions were applied oldest first, across the rebalance too.
    when = dict(processed)
    order: dict[str, list[tuple[object, int]]] = defaultdict(list)
    for event in events:
        order[event.res_id].append((when[event.event_id], event.version))
    for applied_in_order in order.values():
        versions = [version for _, version in sorted(applied_in_order)]
        assert versions == list(range(1, VERSIONS + 1))
    # No gap left open on any partition: each counted all its events.
    per_partition = defaultdict(int)
    for event in events:
        per_partition[event.partition] += 1
    assert progress == {p: (n, "[]") for p, n in per_partition.items()}


def _diagnosis(process: ServiceProcess) -> str:
    """What a surviving process says about its consumer, for a failure's message."""
    try:
        status = httpx.get(f"{process.url}/status/events", headers=staff_headers(), timeout=5)
        consumer = status.json().get("consumer")
    except httpx.HTTPError as exc:
        consumer = str(exc)
    return f"{process.pid}: {consumer}\n{process.log_tail(15)}"
