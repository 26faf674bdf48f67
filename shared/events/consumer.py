"""The consumer runner: idempotent handlers, retries with backoff, a dead-letter topic."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from shared.db.engine import Database
from shared.db.models import ProcessedEvent
from shared.events import kafka
from shared.events.describe import describe
from shared.events.envelope import EnvelopeError, ResourceEvent, parse_event
from shared.events.outbox import current_traceparent, valid_traceparent
from shared.fhir.dates import format_instant, utcnow
from shared.observability.metrics import CONSUMED, DEAD_LETTERS, LAG, RETRIES
from shared.observability.tracing import consuming
from shared.settings import ServiceSettings

log = logging.getLogger(__name__)

# Applies one event inside the transaction that also records it as processed.
Handler = Callable[[Session, ResourceEvent], None]
# Runs before the transaction, e.g. to fetch an id-only event's resource over HTTP.
Prepare = Callable[[ResourceEvent], Awaitable[ResourceEvent]]


@dataclass
class ConsumerStatus:
    """What the status endpoint (and later the metrics) show."""

    # starting, connecting, consuming, waiting (backing off after a failure) or stopped.
    state: str = "starting"
    since: datetime = field(default_factory=utcnow)
    reason: str | None = None
    # time.monotonic() of the last completed poll: a consumer that stops polling is stalled.
    last_poll: float = field(default_factory=time.monotonic)
    processed: int = 0
    duplicates: int = 0
    retries: int = 0
    dead_lettered: int = 0
    # Reconnections because the broker had lost the group's offsets.
    resets: int = 0
    connected: bool = False
    last_error: str | None = None
    lag: dict[str, int] = field(default_factory=dict)
    # Messages this runner sent to each dead-letter topic since it started.
    dlq: dict[str, int] = field(default_factory=dict)
    # Topics that do not exist while this service may not create them (not ready).
    missing_topics: list[str] = field(default_factory=list)

    def enter(self, state: str, reason: str | None = None) -> None:
        """Record a change of state (and since when it holds)."""
        if state != self.state or reason != self.reason:
            self.state, self.reason, self.since = state, reason, utcnow()

    def as_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "since": format_instant(self.since),
            "reason": self.reason,
            "processed": self.processed,
            "duplicates": self.duplicates,
            "retries": self.retries,
            "deadLettered": self.dead_lettered,
            "resets": self.resets,
            "dlq": dict(self.dlq),
            "connected": self.connected,
            "lastError": self.last_error,
            "lag": dict(self.lag),
            "totalLag": sum(self.lag.values()),
            "missingTopics": list(self.missing_topics),
        }


_OFFSET_CHECK_SECONDS = 2.0


class OffsetsLost(Exception):
    """The broker forgot the group's committed offsets (e.g. an in-memory broker restarted)."""


class BrokerUnavailable(Exception):
    """The broker stopped answering while we consumed."""


def cancelled_from_outside() -> bool:
    """Whether the running task itself is being cancelled (shutdown), as opposed to a
    CancelledError that escaped from inside a client library."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def close_quietly(client: AIOKafkaConsumer | AIOKafkaProducer, timeout: float) -> None:
    """Stop a Kafka client whatever it raises (aiokafka's stop can raise CancelledError from
    its fetcher after a broker outage) and however long it hangs."""
    try:
        await asyncio.wait_for(client.stop(), timeout)
    except asyncio.CancelledError:
        if cancelled_from_outside():
            raise
        log.debug("stopping a Kafka client raised CancelledError; ignored")
    except Exception as exc:
        log.debug("stopping a Kafka client failed: %s", describe(exc))


def _header(message: ConsumerRecord, name: str) -> str | None:
    for key, value in message.headers or ():
        if key == name and value:
            return value.decode("latin-1")
    return None


class ConsumerRunner:
    """Consumes topics as group `name`; a message's effect and its processed row commit together."""

    def __init__(
        self,
        settings: ServiceSettings,
        database: Database,
        handlers: dict[str, Handler],
        *,
        name: str,
        prepare: Prepare | None = None,
        on_connect: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.settings = settings
        self.database = database
        self.handlers = handlers
        self.name = name
        self.prepare = prepare
        # Runs at every (re)connection before consuming, e.g. to catch up replicas whose
        # offsets the broker lost. It must not raise.
        self.on_connect = on_connect
        self.status = ConsumerStatus()
        self._stopping = False
        self._stop_event = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        # What this runner committed, to notice a broker that lost its offsets.
        self._committed: dict[TopicPartition, int] = {}
        self._last_check = 0.0
        self._lag_labels: set[tuple[str, str]] = set()

    @property
    def _timeout(self) -> float:
        """Seconds any one broker request may take before the broker counts as gone."""
        return self.settings.kafka_request_timeout_ms / 1000

    # ---- one message -------------------------------------------------------------------
    def _seen(self, session: Session, event_id: str) -> bool:
        return (
            session.execute(
                select(ProcessedEvent.event_id).where(
                    ProcessedEvent.consumer == self.name, ProcessedEvent.event_id == event_id
                )
            ).first()
            is not None
        )

    def apply(self, topic: str, event: ResourceEvent) -> bool:
        """Apply an event once; returns False when it had been applied already."""
        try:
            with self.database.write() as session:
                if self._seen(session, event.id):
                    return False
                self.handlers[topic](session, event)
                session.execute(
                    insert(ProcessedEvent).values(
                        consumer=self.name, event_id=event.id, processed_at=utcnow()
                    )
                )
        except IntegrityError:
            # Another runner applied it at the same moment; any other conflict is an error.
            with self.database.read() as session:
                if self._seen(session, event.id):
                    return False
            raise
        return True

    async def handle(self, message: ConsumerRecord, dlq: AIOKafkaProducer) -> bool:
        """Process one message: apply it, retry transient failures, dead-letter the rest.

        Returns False when shutdown interrupted the retries: the message is then neither
        applied nor dead-lettered, and its offset must not be committed.
        """
        try:
            event = parse_event(message.value or b"")
        except EnvelopeError as exc:
            await self._dead_letter(dlq, message, f"poison: {exc}", attempts=1)
            return True
        event = event.model_copy(update={"partition": message.partition})
        # The writer's trace goes on here, and in the events this one's reactions write.
        traceparent = valid_traceparent(_header(message, "traceparent"))
        offset = message.offset
        token = current_traceparent.set(traceparent)
        try:
            return await self._attempts(message, dlq, event, traceparent, offset)
        finally:
            current_traceparent.reset(token)

    async def _attempts(
        self,
        message: ConsumerRecord,
        dlq: AIOKafkaProducer,
        event: ResourceEvent,
        traceparent: str | None,
        offset: int,
    ) -> bool:
        attempt = 0
        while True:
            attempt += 1
            try:
                # The owner look-up of an id-only event belongs to the same trace.
                with consuming(message.topic, traceparent, **{"messaging.kafka.offset": offset}):
                    prepared = event if self.prepare is None else await self.prepare(event)
                    applied = await run_in_threadpool(self.apply, message.topic, prepared)
                if applied:
                    self.status.processed += 1
                    CONSUMED.labels(self.settings.service_name, message.topic).inc()
                else:
                    self.status.duplicates += 1
                return True
            except Exception as exc:
                self.status.last_error = describe(exc)
                if attempt >= self.settings.consumer_max_attempts:
                    # Never the raw message: a database error quotes the statement's parameters.
                    await self._dead_letter(dlq, message, describe(exc), attempt)
                    return True
                RETRIES.labels(self.settings.service_name, message.topic).inc()
                log.info("%s: attempt %d failed (%s); retrying", self.name, attempt, describe(exc))
                self.status.retries += 1
                delay = min(self.settings.consumer_backoff_seconds * 2 ** (attempt - 1), 10.0)
                # A shutdown cuts the wait short; the message is redelivered after the restart.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop_event.wait(), timeout=delay)
                if self._stopping:
                    return False

    async def _dead_letter(
        self, dlq: AIOKafkaProducer, message: ConsumerRecord, reason: str, attempts: int
    ) -> None:
        headers = [
            *list(message.headers or []),
            ("dlq_error", reason[:500].encode()),
            ("dlq_attempts", str(attempts).encode()),
            ("dlq_source_topic", message.topic.encode()),
            ("dlq_source_partition", str(message.partition).encode()),
            ("dlq_source_offset", str(message.offset).encode()),
            ("dlq_consumer", self.name.encode()),
        ]
        topic = f"{message.topic}.dlq"
        await dlq.send_and_wait(topic, key=message.key, value=message.value, headers=headers)
        self.status.dead_lettered += 1
        DEAD_LETTERS.labels(self.settings.service_name, message.topic).inc()
        self.status.dlq[topic] = self.status.dlq.get(topic, 0) + 1
        log.warning(
            "%s: message at %s[%s]:%s dead-lettered: %s",
            self.name,
            message.topic,
            message.partition,
            message.offset,
            reason[:200],
        )

    # ---- the loop ----------------------------------------------------------------------
    async def run(self) -> None:
        """Consume until stopped. Whatever fails (the broker gone for minutes, an error or a
        stray cancellation inside the client library) ends in a backoff and a fresh consumer."""
        backoff = 0.2
        topics = list(self.handlers)
        while not self._stopping:
            self.status.enter("connecting", self.status.reason)
            consumer = kafka.consumer(self.settings, *topics, group=self.name)
            dlq = kafka.producer(self.settings)
            try:
                await kafka.ensure_topics(self.settings, topics + [f"{t}.dlq" for t in topics])
                self.status.missing_topics = []
                if self.on_connect is not None:
                    await self.on_connect()
                self._committed.clear()
                self._last_check = time.monotonic()
                await consumer.start()
                await dlq.start()
                self._consumer = consumer
                self.status.connected = True
                self.status.last_poll = time.monotonic()
                self.status.enter("consuming")
                backoff = 0.2
                await self._loop(consumer, dlq)
            except OffsetsLost as exc:
                self._failed(exc, "the broker lost our offsets")
                self.status.resets += 1
                backoff = 0  # at once: the broker answers, it only forgot
            except kafka.TopicsMissing as exc:
                self.status.missing_topics = exc.topics
                self._failed(exc, "topics missing")
            except (TimeoutError, KafkaError, OSError, BrokerUnavailable) as exc:
                self._failed(exc, "broker unavailable")
            except asyncio.CancelledError as exc:
                if cancelled_from_outside():
                    raise
                self._failed(exc, "cancelled inside the Kafka client")
            except Exception as exc:  # never let the replica consumer die silently
                self._failed(exc, "consumer failed")
                log.exception("%s: consumer failed; restarting", self.name)
            finally:
                self._consumer = None
                self.status.connected = False
                for client in (consumer, dlq):
                    await close_quietly(client, self._timeout)
            if not self._stopping:
                self.status.enter("waiting", self.status.reason)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop_event.wait(), timeout=backoff)
                backoff = min(max(backoff, 0.1) * 2, 5)
        self.status.enter("stopped")

    def _failed(self, exc: BaseException, reason: str) -> None:
        self.status.last_error = describe(exc)
        self.status.reason = f"{reason}: {self.status.last_error}"[:500]
        log.warning("%s: %s; reconnecting", self.name, self.status.reason)

    async def _loop(self, consumer: AIOKafkaConsumer, dlq: AIOKafkaProducer) -> None:
        while not self._stopping:
            batches = await consumer.getmany(timeout_ms=200)
            self.status.last_poll = time.monotonic()
            for partition, messages in batches.items():
                done: int | None = None
                for message in messages:
                    if self._stopping or not await self.handle(message, dlq):
                        break
                    done = message.offset
                if done is not None:
                    # After the database commits: a crash in between replays, harmlessly.
                    await self._commit(consumer, partition, done + 1)
                if self._stopping:
                    return
            if time.monotonic() - self._last_check > _OFFSET_CHECK_SECONDS:
                await self._check_broker(dlq)
                await self._check_offsets(consumer)
            # position() waits for the broker when a partition has no position yet.
            try:
                await asyncio.wait_for(self._update_lag(consumer), self._timeout)
            except TimeoutError:
                raise BrokerUnavailable("the broker did not answer for the consumer lag") from None

    async def _check_broker(self, dlq: AIOKafkaProducer) -> None:
        """Raise BrokerUnavailable when the broker does not answer a metadata request.

        aiokafka hides an outage from `getmany` (it answers nothing, for ever); starting
        over with a fresh consumer once the broker is back is what proved reliable.
        """
        try:
            # Through the dead-letter producer's connection: a metadata request from the
            # consumer itself makes aiokafka rejoin the group whenever any topic changes.
            await asyncio.wait_for(dlq.client.fetch_all_metadata(), self._timeout)
        except (TimeoutError, KafkaError, OSError) as exc:
            raise BrokerUnavailable(f"no metadata from the broker ({describe(exc)})") from None

    async def _commit(
        self, consumer: AIOKafkaConsumer, partition: TopicPartition, offset: int
    ) -> None:
        try:
            # aiokafka retries some failures for ever (a topic the broker forgot, say).
            await asyncio.wait_for(consumer.commit({partition: offset}), self._timeout)
        except TimeoutError:
            raise OffsetsLost(
                f"committing {partition.topic}[{partition.partition}] hangs"
            ) from None
        self._committed[partition] = offset

    async def _check_offsets(self, consumer: AIOKafkaConsumer) -> None:
        """Raise OffsetsLost when the broker no longer has what we committed.

        The dev broker keeps everything in memory: after its restart the group, offsets and
        topics are gone while aiokafka quietly reconnects. Starting over (and letting
        `on_connect` catch the replicas up) is then the only safe way on.
        """
        self._last_check = time.monotonic()
        assigned = consumer.assignment()
        for partition, offset in list(self._committed.items()):
            if partition not in assigned:
                del self._committed[partition]  # another member's now
                continue
            try:
                known = await asyncio.wait_for(consumer.committed(partition), self._timeout)
            except TimeoutError:
                known = None
            if known is None or known < offset:
                raise OffsetsLost(
                    f"the broker lost the offset {offset} of {partition.topic}"
                    f"[{partition.partition}] (it has {known})"
                )

    async def _update_lag(self, consumer: AIOKafkaConsumer) -> None:
        service = self.settings.service_name
        lag: dict[str, int] = {}
        for partition in consumer.assignment():
            highwater = consumer.highwater(partition)
            if highwater is None:
                continue
            position = await consumer.position(partition)
            lag[f"{partition.topic}[{partition.partition}]"] = max(highwater - position, 0)
            LAG.labels(service, partition.topic, str(partition.partition)).set(
                max(highwater - position, 0)
            )
        # Partitions this runner no longer holds drop out (another process reports them).
        for gone in self._lag_labels - {(p.topic, str(p.partition)) for p in consumer.assignment()}:
            LAG.labels(service, *gone).set(0)
        self._lag_labels = {(p.topic, str(p.partition)) for p in consumer.assignment()}
        self.status.lag = lag

    def stop(self) -> None:
        """Ask the runner to finish its current message and end."""
        self._stopping = True
        self._stop_event.set()
