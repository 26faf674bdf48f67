"""Sequence numbers per partition: consumers of several partitions raise no false gaps,
still see real ones, and one process (not all) closes each gap."""

from __future__ import annotations

import shutil
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import httpx
import orjson
from sqlalchemy import select

from shared.db.engine import Database
from shared.db.models import OutboxRow, ReplicaProgress
from shared.events.envelope import ResourceEvent, event_from
from shared.events.gaps import SequenceTracker
from shared.events.healing import ReplicaHealer
from shared.events.relay import OutboxRelay, partition_of
from tests.conftest import BACKENDS
from tests.factories import FHIR_JSON, patient
from tests.outbox_rows import RESOURCE_EVENTS

TOPIC = "fhir.Patient"


def _event(partition: int, seq: int, minute: int = 0) -> ResourceEvent:
    event = event_from(
        {
            "id": str(uuid.uuid4()),
            "type": "fhir.Patient.deleted",
            "subject": f"Patient/p{partition}",
            "versionid": str(seq),
            "sequence": f"{seq:019d}",
            "time": f"2026-11-30T10:{minute:02d}:00.000000Z",
        }
    )
    return event.model_copy(update={"partition": partition})


def _database(tmp_path: Path, sqlite_template: Path) -> Database:
    shutil.copy(sqlite_template, tmp_path / "r.db")
    return Database(f"sqlite:///{tmp_path / 'r.db'}")


def _observe(database: Database, *events: ResourceEvent) -> None:
    tracker = SequenceTracker()
    for event in events:
        with database.write() as session:
            tracker.observe(session, TOPIC, event)


def _progress(database: Database) -> dict[int, tuple[int, list[list[int]], bool]]:
    with database.read() as session:
        rows = session.execute(select(ReplicaProgress)).scalars()
        return {
            r.partition: (r.contiguous, orjson.loads(r.seen_above), r.gap_since is not None)
            for r in rows
        }


def test_partitions_interleaving_or_lagging_open_no_gap(tmp_path, sqlite_template):
    """Process A owns partition 0 and runs ahead; process B's partition 1 comes much later."""
    database = _database(tmp_path, sqlite_template)
    _observe(database, _event(0, 1), _event(1, 1), _event(0, 2))
    _observe(database, *(_event(0, seq) for seq in range(3, 50)))
    _observe(database, *(_event(1, seq) for seq in range(2, 30)))
    assert _progress(database) == {0: (49, [], False), 1: (29, [], False)}
    assert SequenceTracker().overdue(database, timedelta(seconds=-1)) == []
    database.dispose()


def test_a_number_missing_on_one_partition_is_still_a_gap(tmp_path, sqlite_template):
    database = _database(tmp_path, sqlite_template)
    _observe(database, _event(0, 1), _event(1, 1, minute=1), _event(1, 2, minute=2))
    _observe(database, _event(1, 4, minute=4), _event(0, 2), _event(0, 3))
    assert _progress(database) == {0: (3, [], False), 1: (2, [[4, 4]], True)}
    [gap] = SequenceTracker().overdue(database, timedelta(seconds=-1))
    assert (gap.topic, gap.partition, gap.contiguous, gap.highest) == (TOPIC, 1, 2, 4)
    # The catch-up starts from partition 1's last contiguous event, not partition 0's.
    assert gap.contiguous_time == datetime(2026, 11, 30, 10, 2)
    database.dispose()


async def test_one_of_the_services_processes_closes_a_gap(tmp_path, sqlite_template):
    """Every consumer process runs a healer over the same progress rows: one catch-up only."""
    database = _database(tmp_path, sqlite_template)
    _observe(database, _event(2, 1), _event(2, 3), _event(4, 1), _event(4, 5))
    resyncs: list[tuple[str, datetime | None]] = []

    async def resync(res_type: str, since: datetime | None) -> int:
        resyncs.append((res_type, since))
        return 0

    settings = SimpleNamespace(gap_timeout_s=0.0)
    healers = [
        ReplicaHealer(
            settings,  # type: ignore[arg-type]
            SimpleNamespace(database=database),  # type: ignore[arg-type]
            {TOPIC: "Patient"},
            resync,
            lambda _: "http://owner/fhir",
            httpx.AsyncClient,
        )
        for _ in range(3)
    ]
    closed = [await healer.close_overdue_gaps() for healer in healers]
    # Both partitions' gaps, in one catch-up of the type, by the first process only.
    assert closed == [2, 0, 0]
    assert resyncs == [("Patient", datetime(2026, 11, 30, 10, 0))]
    assert _progress(database) == {2: (3, [], False), 4: (5, [], False)}
    database.dispose()


@BACKENDS
async def test_the_relay_numbers_each_partition_and_keeps_a_resource_on_one(
    intake: httpx.AsyncClient,
):
    app = intake._transport.app  # type: ignore[attr-defined]
    database: Database = app.state.fhir.database
    relay: OutboxRelay = app.state.events.relay
    ids = []
    for name in "ABCDEFGH":
        created = await intake.post("/Patient", json=patient(name), headers=FHIR_JSON)
        ids.append(created.json()["id"])
    for res_id in ids[:4]:  # second versions of half of them
        body = {**patient("Z"), "id": res_id}
        assert (await intake.put(f"/Patient/{res_id}", json=body, headers=FHIR_JSON)).is_success

    with database.read() as session:
        rows = session.execute(
            select(OutboxRow.pk, OutboxRow.key).where(RESOURCE_EVENTS).order_by(OutboxRow.pk)
        ).all()
    topic = "fhir.Patient"
    numbers = relay._number([pk for pk, _ in rows], {topic: 6})
    counts: dict[int, int] = {}
    for pk, key in rows:
        partition, seq = numbers[pk]
        assert partition == partition_of(key, 6)  # where Kafka's producer would put it
        counts[partition] = counts.get(partition, 0) + 1
        assert seq == counts[partition]  # 1, 2, 3... on each partition, in publishing order
    assert len(counts) > 1
    # A re-send keeps partition and number, even were the topic to grow meanwhile.
    assert relay._number([pk for pk, _ in rows], {topic: 12}) == numbers
