"""Replicas heal any gap by themselves: sequence gaps, lost tails, replaced databases."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import delete, select

from shared.db.engine import Database
from shared.db.models import INDEX_TABLES, OutboxRow, ReplicaProgress, ResourceRow, VersionRow
from shared.events import kafka
from shared.events.envelope import ResourceEvent, event_from, parse_event, with_sequence
from shared.events.gaps import SequenceTracker, add_to_ranges, advance
from shared.events.relay import OutboxRelay
from tests import kafka_support
from tests.conftest import BACKENDS
from tests.factories import FHIR_JSON, patient
from tests.kafka_support import Running, eventually, payloads, read_topic, running
from tests.outbox_rows import RESOURCE_EVENTS
from tooling.broker import Broker

kafka_broker = kafka_support.kafka_broker
topic_prefix = kafka_support.topic_prefix
new_database = kafka_support.new_database

HEALING = {"gap_timeout_s": 1.0}


@asynccontextmanager
async def healing_pair(
    broker: Broker, prefix: str, new_database: Callable[[str], str], **replica: Any
) -> AsyncIterator[tuple[Running, Running]]:
    """Intake and a scheduling replica of its Patients, healing quickly. Only the repair a
    test is about may act: no catch-up when the replica's consumer reconnects."""
    settings = {"kafka_bootstrap_servers": broker.bootstrap, "topic_prefix": prefix}
    async with (
        running("intake", new_database("intake"), **settings) as intake,
        running(
            "scheduling",
            new_database("sched"),
            owners={"intake": intake},
            resync_on_start=False,
            **HEALING,
            **replica,
            **settings,
        ) as sched,
    ):
        yield intake, sched


# ---- the numbering -----------------------------------------------------------------------
def test_ranges_merge_and_the_contiguous_point_advances():
    ranges: list[list[int]] = []
    for seq in (5, 7, 6, 9):
        ranges = add_to_ranges(ranges, seq)
    assert ranges == [[5, 7], [9, 9]]
    assert add_to_ranges(ranges, 6) == ranges  # a repeat changes nothing
    assert advance(3, ranges) == (3, [[5, 7], [9, 9]])  # 4 is still missing
    assert advance(4, ranges) == (7, [[9, 9]])
    assert advance(9, ranges) == (9, [])


def _event(seq: int, when: str = "2026-11-30T10:00:00.000000Z") -> ResourceEvent:
    return event_from(
        {
            "id": str(uuid.uuid4()),
            "type": "fhir.Patient.deleted",
            "subject": "Patient/p1",
            "versionid": str(seq),
            "sequence": f"{seq:019d}",
            "time": when,
        }
    )


def _progress(database: Database) -> ReplicaProgress:
    with database.read() as session:
        return session.execute(select(ReplicaProgress)).scalar_one()


def test_the_tracker_opens_a_gap_only_for_a_missing_number(tmp_path, sqlite_template):
    import shutil

    shutil.copy(sqlite_template, tmp_path / "r.db")
    database = Database(f"sqlite:///{tmp_path / 'r.db'}")
    tracker = SequenceTracker()

    def observe(seq: int, when: str = "2026-11-30T10:00:00.000000Z") -> None:
        with database.write() as session:
            tracker.observe(session, "fhir.Patient", _event(seq, when))

    observe(1)
    observe(2, "2026-11-30T10:00:02.000000Z")
    observe(2)  # redelivered: no gap
    assert _progress(database).contiguous == 2 and _progress(database).gap_since is None
    observe(5)
    row = _progress(database)
    assert (row.contiguous, row.gap_since is not None) == (2, True)
    # The catch-up must start from the last event known to be contiguous.
    assert row.contiguous_time == datetime(2026, 11, 30, 10, 0, 2)
    observe(3)
    observe(4)  # late arrivals fill the gap: it closes by itself
    row = _progress(database)
    assert (row.contiguous, row.gap_since, orjson.loads(row.seen_above)) == (5, None, [])
    observe(7)
    [gap] = tracker.overdue(database, older_than=__import__("datetime").timedelta(seconds=-1))
    assert (gap.contiguous, gap.highest) == (5, 7)
    tracker.closed(database, gap, covered_until=datetime(2026, 11, 30, 11, 0))
    row = _progress(database)
    assert (row.contiguous, row.gap_since) == (7, None)
    database.dispose()


@BACKENDS
async def test_the_relay_numbers_each_topic_in_publishing_order_once(intake: httpx.AsyncClient):
    app = intake._transport.app  # type: ignore[attr-defined]
    database: Database = app.state.fhir.database
    relay: OutboxRelay = app.state.events.relay
    for name in ("A", "B", "C"):
        assert (await intake.post("/Patient", json=patient(name), headers=FHIR_JSON)).is_success

    def pks() -> list[int]:
        with database.read() as session:
            return list(
                session.execute(
                    select(OutboxRow.pk).where(RESOURCE_EVENTS).order_by(OutboxRow.pk)
                ).scalars()
            )

    first = relay._number(pks(), {})  # one partition
    assert [first[pk] for pk in pks()] == [(0, 1), (0, 2), (0, 3)]
    # Numbered again (a re-send after a failure): every row keeps its number.
    assert relay._number(pks(), {}) == first
    assert (await intake.post("/Patient", json=patient("D"), headers=FHIR_JSON)).is_success
    assert [relay._number(pks(), {})[pk] for pk in pks()] == [(0, 1), (0, 2), (0, 3), (0, 4)]
    [row] = [r for r in relay._fetch() if r.topic.endswith(".Patient")][1:2]
    published = parse_event(with_sequence(row.payload, first[row.pk][1]))
    assert published.sequence == "0000000000000000002"
    assert published.seq == 2


# ---- dropping events between the relay and the broker ------------------------------------
class DroppingProducer:
    """Wraps the relay's producer: the next `drop` sends on `topic` are acknowledged, and lost."""

    armed: dict[str, int] = {}

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def send(self, topic: str, **kwargs: Any) -> Any:
        if self.armed.get(topic, 0) > 0:
            self.armed[topic] -= 1
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done
        return await self.inner.send(topic, **kwargs)


@pytest.fixture
def dropping(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    real = kafka.producer
    DroppingProducer.armed = {}
    monkeypatch.setattr(kafka, "producer", lambda settings: DroppingProducer(real(settings)))
    return DroppingProducer.armed


async def _present(replica: Running, pid: str) -> bool:
    return (await replica.client.get(f"/Patient/{pid}")).status_code == 200


async def _create(intake: Running, name: str) -> str:
    created = await intake.client.post("/Patient", json=patient(name))
    assert created.status_code == 201, created.text
    return created.json()["id"]


async def _relayed(intake: Running) -> bool:
    return intake.events.relay.pending() == 0


async def test_an_event_lost_before_the_broker_is_filled_in_when_the_next_one_shows_the_gap(
    kafka_broker, topic_prefix: str, new_database: Callable[[str], str], dropping: dict[str, int]
):
    async with healing_pair(kafka_broker, topic_prefix, new_database, reconcile_interval_s=0) as (
        intake,
        sched,
    ):
        # (Reconciliation off: only the sequence can reveal the loss here.)
        first = await _create(intake, "First")
        await eventually(lambda: _present(sched, first), what="the first patient replicated")
        dropping[f"{topic_prefix}Patient"] = 1
        lost = await _create(intake, "Lost")
        await eventually(lambda: _relayed(intake), what="the lost event marked sent")
        after = await _create(intake, "After")
        await eventually(lambda: _present(sched, after), what="the next patient replicated")
        await eventually(lambda: _present(sched, lost), timeout=30, what="the gap filled")
        status = sched.events.status()["consumer"]
        assert status["healing"]["gapRepairs"] >= 1
        assert status["healing"]["lastRepair"]["kind"] == "gap"
        await eventually(
            lambda: sched.events.status()["consumer"]["gaps"] == {}, what="no gap left open"
        )


async def test_a_lost_last_event_is_found_by_reconciliation(
    kafka_broker, topic_prefix: str, new_database: Callable[[str], str], dropping: dict[str, int]
):
    async with healing_pair(kafka_broker, topic_prefix, new_database, reconcile_interval_s=1) as (
        intake,
        sched,
    ):
        first = await _create(intake, "First")
        await eventually(lambda: _present(sched, first), what="the first patient replicated")
        dropping[f"{topic_prefix}Patient"] = 1
        lost = await _create(intake, "Lost")  # nothing follows it: no gap to see
        await eventually(lambda: _present(sched, lost), timeout=30, what="the tail restored")
        healing = sched.events.status()["consumer"]["healing"]
        assert healing["reconcileRepairs"] >= 1
        assert healing["lastRepair"]["kind"] == "reconciliation"


async def test_reconciliation_is_quiet_when_nothing_is_missing(
    kafka_broker, topic_prefix: str, new_database: Callable[[str], str]
):
    async with healing_pair(kafka_broker, topic_prefix, new_database) as (intake, sched):
        ids = [await _create(intake, f"P{n}") for n in range(5)]
        await eventually(lambda: _present(sched, ids[-1]), what="replicated")
        assert await sched.events.healer.reconcile_all() == 0
        assert sched.events.status()["consumer"]["healing"]["reconcileRepairs"] == 0


def _forget(database: Database, pids: list[str]) -> None:
    """Remove resources from a replica behind its back (a restore from an older backup)."""
    with database.write() as session:
        pks = select(ResourceRow.pk).where(ResourceRow.res_id.in_(pids))
        for table in INDEX_TABLES.values():
            session.execute(delete(table).where(table.resource_pk.in_(pks)))
        session.execute(delete(ResourceRow).where(ResourceRow.res_id.in_(pids)))
        session.execute(delete(VersionRow).where(VersionRow.res_id.in_(pids)))


async def test_resources_lost_from_a_running_replica_come_back_by_reconciliation(
    kafka_broker, topic_prefix: str, new_database: Callable[[str], str]
):
    async with healing_pair(kafka_broker, topic_prefix, new_database, reconcile_interval_s=1) as (
        intake,
        sched,
    ):
        ids = [await _create(intake, f"P{n}") for n in range(12)]
        await eventually(lambda: _present(sched, ids[-1]), what="replicated")
        await asyncio.to_thread(_forget, sched.database, ids[2:7])
        for pid in ids:
            await eventually(lambda p=pid: _present(sched, p), timeout=30, what="restored")
        assert sched.events.status()["consumer"]["healing"]["reconcileRepairs"] >= 1


async def test_a_replaced_replica_database_resyncs_at_start_although_offsets_survive(
    kafka_broker, topic_prefix: str, new_database: Callable[[str], str]
):
    settings = {"kafka_bootstrap_servers": kafka_broker.bootstrap, "topic_prefix": topic_prefix}
    async with running("intake", new_database("intake"), **settings) as intake:
        owners = {"intake": intake}
        # No reconciliation: the start-up rule alone must do it.
        quiet = {"reconcile_interval_s": 0, **settings}
        async with running("scheduling", new_database("old"), owners=owners, **quiet) as sched:
            ids = [await _create(intake, f"P{n}") for n in range(15)]
            await eventually(lambda: _present(sched, ids[-1]), what="replicated")
            await eventually(
                lambda: sched.events.status()["consumer"]["totalLag"] == 0, what="offsets"
            )
        # A new, empty database; the consumer group (and its committed offsets) is the same.
        async with running("scheduling", new_database("new"), owners=owners, **quiet) as fresh:
            for pid in ids:
                await eventually(lambda p=pid: _present(fresh, p), what="resynced at start")
            assert fresh.events.status()["consumer"]["healing"]["startResyncs"] >= 1


async def test_published_events_carry_contiguous_sequence_numbers(
    kafka_broker, topic_prefix: str, new_database: Callable[[str], str]
):
    settings = {"kafka_bootstrap_servers": kafka_broker.bootstrap, "topic_prefix": topic_prefix}
    async with running("intake", new_database("intake"), **settings) as intake:
        for n in range(4):
            await _create(intake, f"P{n}")
        records = await read_topic(kafka_broker.bootstrap, f"{topic_prefix}Patient", count=4)
        assert [event_from(e).seq for e in payloads(records)] == [1, 2, 3, 4]
