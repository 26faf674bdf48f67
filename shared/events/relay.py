"""The outbox relay: publishes unsent outbox rows to Kafka in order, then marks them sent."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner
from sqlalchemy import bindparam, func, insert, select, text, update
from starlette.concurrency import run_in_threadpool

from shared.db.engine import Database
from shared.db.models import OutboxRow, RelayState, TopicSequence
from shared.events import kafka
from shared.events.describe import describe
from shared.events.envelope import with_sequence
from shared.fhir.dates import utcnow
from shared.observability.metrics import RELAY_ERRORS, RELAY_PUBLISHED
from shared.settings import ServiceSettings

log = logging.getLogger(__name__)
_LEADER_LOCK = 727275
_SET_SEQ = (
    update(OutboxRow.__table__)
    .where(OutboxRow.__table__.c.pk == bindparam("b_pk"))
    .values(seq=bindparam("b_seq"), partition=bindparam("b_partition"))
)
_PARTITIONER = DefaultPartitioner()


def partition_of(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives `key` (murmur2) among `partitions`."""
    all_partitions = list(range(partitions))
    return _PARTITIONER(key.encode(), all_partitions, all_partitions)


@dataclass
class RelayStatus:
    published: int = 0
    failures: int = 0
    last_error: str | None = None
    connected: bool = False
    leader: bool = False
    # Topics that do not exist while this service may not create them (not ready).
    missing_topics: list[str] = field(default_factory=list)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class TopicsLost(KafkaError):
    """Sends were acknowledged for topics the broker then did not have: publish again."""


class OutboxRelay:
    """One relay per database publishes (a PostgreSQL advisory lock elects it)."""

    def __init__(self, settings: ServiceSettings, database: Database, topics: list[str]) -> None:
        self.settings = settings
        self.database = database
        self.topics = topics
        self.status = RelayStatus()
        self._wake = asyncio.Event()
        # The loop the relay runs on, for wakes from worker threads.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        self._leader_connection = None
        self._holds_lock = False

    def wake(self) -> None:
        """Called after a write commits, so events leave without waiting for the next poll.

        Units of work commit in worker threads, and an asyncio.Event is not thread-safe: set
        from another thread, it would not wake the loop until something else did.
        """
        loop = self._loop
        if loop is None or _running_loop() is loop:
            self._wake.set()
            return
        with contextlib.suppress(RuntimeError):  # the loop has closed: nothing to wake
            loop.call_soon_threadsafe(self._wake.set)

    def _fetch(self) -> list[OutboxRow]:
        with self.database.read() as session:
            return list(
                session.execute(
                    select(OutboxRow)
                    .where(OutboxRow.sent_at.is_(None))
                    .order_by(OutboxRow.pk)
                    .limit(self.settings.relay_batch_size)
                ).scalars()
            )

    def _number(self, pks: list[int], partitions: dict[str, int]) -> dict[int, tuple[int, int]]:
        """Give unnumbered rows a partition (from the key, as Kafka's default partitioner
        would, over `partitions[topic]`) and the next sequence number of that partition, in
        pk order; returns every row's (partition, number).

        Numbered in the database before sending, so a row sent again after a failure keeps
        its partition and number; rows another relay numbered meanwhile keep theirs. Numbers
        count per partition because partitions are consumed apart: a replica's consumers see
        each partition in order, never the topic as a whole.
        """
        table = OutboxRow.__table__
        with self.database.write() as session:
            rows = session.execute(
                select(table.c.pk, table.c.topic, table.c.key, table.c.partition, table.c.seq)
                .where(table.c.pk.in_(pks))
                .order_by(table.c.pk)
            ).all()
            numbers = {row.pk: (row.partition or 0, row.seq) for row in rows if row.seq is not None}
            fresh = [row for row in rows if row.seq is None]
            if not fresh:
                return numbers
            chosen = {row.pk: partition_of(row.key, partitions.get(row.topic, 1)) for row in fresh}
            slots = sorted({(row.topic, chosen[row.pk]) for row in fresh})
            topics = sorted({topic for topic, _ in slots})
            # (dict() of a Result would take it for a mapping: it has keys().)
            last = {
                (topic, partition): seq
                for topic, partition, seq in session.execute(
                    select(TopicSequence.topic, TopicSequence.partition, TopicSequence.last_seq)
                    .where(TopicSequence.topic.in_(topics))
                    .with_for_update()
                )
            }
            known = set(last)
            for row in fresh:
                slot = (row.topic, chosen[row.pk])
                last[slot] = last.get(slot, 0) + 1
                numbers[row.pk] = (slot[1], last[slot])
            session.connection().execute(
                _SET_SEQ,
                [
                    {"b_pk": row.pk, "b_partition": numbers[row.pk][0], "b_seq": numbers[row.pk][1]}
                    for row in fresh
                ],
            )
            for topic, partition in slots:
                if (topic, partition) in known:
                    session.execute(
                        update(TopicSequence)
                        .where(TopicSequence.topic == topic, TopicSequence.partition == partition)
                        .values(last_seq=last[(topic, partition)])
                    )
                else:
                    session.execute(
                        insert(TopicSequence).values(
                            topic=topic, partition=partition, last_seq=last[(topic, partition)]
                        )
                    )
            return numbers

    def _mark_sent(self, pks: list[int]) -> None:
        with self.database.write() as session:
            session.execute(update(OutboxRow).where(OutboxRow.pk.in_(pks)).values(sent_at=utcnow()))

    def pending(self) -> int:
        """Outbox rows not yet published."""
        with self.database.read() as session:
            return int(
                session.execute(
                    select(func.count()).select_from(OutboxRow).where(OutboxRow.sent_at.is_(None))
                ).scalar_one()
            )

    def _try_lead(self) -> bool:
        """Whether this relay leads (PostgreSQL: holds the advisory lock on its connection)."""
        if self.database.is_sqlite:
            return True
        try:
            if self._leader_connection is None:
                self._leader_connection = self.database.write_engine.connect()
                self._holds_lock = False
            if self._holds_lock:
                # Still leading as long as the session (and so the lock) is alive.
                self._leader_connection.execute(text("SELECT 1"))
                self._leader_connection.commit()
                return True
            got = self._leader_connection.execute(
                text("SELECT pg_try_advisory_lock(:k)"), {"k": _LEADER_LOCK}
            ).scalar_one()
            self._leader_connection.commit()
        except Exception:
            # A broken connection lost the lock with it; the next round reconnects.
            self._release_leadership()
            raise
        self._holds_lock = bool(got)
        return self._holds_lock

    def _release_leadership(self) -> None:
        """End the lock's session for good: closing would only return it to the pool, lock
        and all, so the connection is invalidated (really closed) instead."""
        connection, self._leader_connection = self._leader_connection, None
        self._holds_lock = False
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.invalidate()
            with contextlib.suppress(Exception):
                connection.close()

    async def _missing_topics(self, producer, topics: set[str]) -> set[str]:  # type: ignore[no-untyped-def]
        """Which of `topics` the broker does not know (asked afresh, never auto-creating)."""
        cluster = await producer.client.fetch_all_metadata()
        return topics - set(cluster.topics())

    async def publish_pending(self, producer) -> int:  # type: ignore[no-untyped-def]
        """Publish everything unsent now; returns how many rows were published.

        Rows are marked sent only once acknowledged *and* their topics still exist: an
        in-memory broker restarted under a producer acknowledges sends to topics it no
        longer has, and drops them (Tansu 0.6).
        """
        total = 0
        while True:
            rows = await run_in_threadpool(self._fetch)
            if not rows:
                return total
            topics = {row.topic for row in rows}
            if any(row.seq is None or row.partition is None for row in rows):
                partitions = {t: len(await producer.partitions_for(t)) for t in topics}
                numbers = await run_in_threadpool(
                    self._number, [row.pk for row in rows], partitions
                )
                for row in rows:
                    row.partition, row.seq = numbers[row.pk]
            futures = [
                await producer.send(
                    row.topic,
                    key=row.key.encode(),
                    partition=row.partition,
                    value=with_sequence(row.payload, row.seq),
                    headers=[
                        ("ce_id", row.event_id.encode()),
                        ("ce_type", row.event_type.encode()),
                        ("traceparent", (row.traceparent or "").encode()),
                    ],
                )
                for row in rows
            ]
            await asyncio.gather(*futures)
            lost = await self._missing_topics(producer, topics)
            if lost:
                # Reconnecting re-creates the topics (ensure_topics), then these rows go again.
                raise TopicsLost(f"the broker lost {sorted(lost)} while we published")
            await run_in_threadpool(self._mark_sent, [row.pk for row in rows])
            total += len(rows)
            self.status.published += len(rows)
            RELAY_PUBLISHED.labels(self.settings.service_name).inc(len(rows))

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake at once when stopped."""
        self._wake.clear()
        if not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=seconds)

    async def run(self, poll_seconds: float = 0.5) -> None:
        """Relay until stopped; Kafka outages are retried with backoff and lose nothing."""
        self._loop = asyncio.get_running_loop()
        backoff = 0.2
        try:
            while not self._stopping:
                producer = kafka.producer(self.settings)
                failed = False
                try:
                    if not await run_in_threadpool(self._try_lead):
                        self.status.leader = False
                        await self._pause(2)
                        continue
                    self.status.leader = True
                    await producer.start()
                    await kafka.ensure_topics(self.settings, self.topics)
                    self.status.missing_topics = []
                    self.status.connected = True
                    backoff = 0.2
                    while not self._stopping:
                        # Clear first: a write committing while we publish wakes the next round.
                        self._wake.clear()
                        if not await run_in_threadpool(self._try_lead):
                            break  # the lock went with its connection: compete again
                        await self.publish_pending(producer)
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self._wake.wait(), timeout=poll_seconds)
                except kafka.TopicsMissing as exc:
                    failed = True
                    self._failed(exc)
                    self.status.missing_topics = exc.topics
                    log.error("relay: %s; retrying in %.1f s", exc, backoff)
                except (TimeoutError, KafkaError, OSError) as exc:
                    failed = True
                    self._failed(exc)
                    log.warning("relay: Kafka unavailable (%s); retrying in %.1f s", exc, backoff)
                except Exception as exc:  # e.g. the database is away: retry, never die
                    failed = True
                    self._failed(exc)
                    log.exception("relay: publishing failed; retrying in %.1f s", backoff)
                finally:
                    with contextlib.suppress(Exception):
                        await producer.stop()
                if failed:
                    await run_in_threadpool(self._record_error)
                    await self._pause(backoff)
                    backoff = min(backoff * 2, 5)
        finally:
            self.status.connected = False
            await run_in_threadpool(self._release_leadership)

    def _failed(self, exc: BaseException) -> None:
        self.status.connected = False
        self.status.failures += 1
        RELAY_ERRORS.labels(self.settings.service_name).inc()
        self.status.last_error = describe(exc)

    def _record_error(self) -> None:
        """Keep the last error where `outbox status` (another process) can read it."""
        try:
            with self.database.write() as session:
                values = {"last_error": self.status.last_error, "last_error_at": utcnow()}
                found = session.execute(
                    update(RelayState).where(RelayState.name == "relay").values(**values)
                ).rowcount
                if not found:
                    session.execute(insert(RelayState).values(name="relay", **values))
        except Exception as exc:  # the database may be what failed
            log.debug("relay: could not record its error: %s", describe(exc))

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
