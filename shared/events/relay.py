"""The outbox relay: publishes unsent outbox rows to Kafka in order, then marks them sent."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from aiokafka.errors import KafkaError
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
    .values(seq=bindparam("b_seq"))
)


@dataclass
class RelayStatus:
    published: int = 0
    failures: int = 0
    last_error: str | None = None
    connected: bool = False
    leader: bool = False


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

    def _number(self, pks: list[int]) -> dict[int, int]:
        """Give unnumbered rows the next sequence numbers of their topics, in pk order;
        returns every row's number.

        Numbered in the database before sending, so a row sent again after a failure keeps
        its number; rows another relay numbered meanwhile keep theirs.
        """
        table = OutboxRow.__table__
        with self.database.write() as session:
            rows = session.execute(
                select(table.c.pk, table.c.topic, table.c.seq)
                .where(table.c.pk.in_(pks))
                .order_by(table.c.pk)
            ).all()
            numbers = {pk: seq for pk, _, seq in rows if seq is not None}
            topics = sorted({topic for _, topic, seq in rows if seq is None})
            if not topics:
                return numbers
            # (dict() of a Result would take it for a mapping: it has keys().)
            last = {
                topic: seq
                for topic, seq in session.execute(
                    select(TopicSequence.topic, TopicSequence.last_seq)
                    .where(TopicSequence.topic.in_(topics))
                    .with_for_update()
                )
            }
            known = set(last)
            for pk, topic, seq in rows:
                if seq is None:
                    last[topic] = last.get(topic, 0) + 1
                    numbers[pk] = last[topic]
            session.connection().execute(
                _SET_SEQ,
                [{"b_pk": pk, "b_seq": numbers[pk]} for pk, _, seq in rows if seq is None],
            )
            for topic in topics:
                if topic in known:
                    session.execute(
                        update(TopicSequence)
                        .where(TopicSequence.topic == topic)
                        .values(last_seq=last[topic])
                    )
                else:
                    session.execute(insert(TopicSequence).values(topic=topic, last_seq=last[topic]))
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
            if any(row.seq is None for row in rows):
                numbers = await run_in_threadpool(self._number, [row.pk for row in rows])
                for row in rows:
                    row.seq = numbers[row.pk]
            topics = {row.topic for row in rows}
            futures = [
                await producer.send(
                    row.topic,
                    key=row.key.encode(),
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
