"""The consumer runner: idempotent handlers, retries with backoff, a dead-letter topic."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from aiokafka.errors import KafkaError
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from shared.db.engine import Database
from shared.db.models import ProcessedEvent
from shared.events import kafka
from shared.events.envelope import EnvelopeError, parse_event
from shared.fhir.dates import utcnow
from shared.settings import ServiceSettings

log = logging.getLogger(__name__)

# Applies one event inside the transaction that also records it as processed.
Handler = Callable[[Session, dict[str, Any]], None]
# Runs before the transaction, e.g. to fetch an id-only event's resource over HTTP.
Prepare = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


@dataclass
class ConsumerStatus:
    """What the status endpoint (and later the metrics) show."""

    processed: int = 0
    duplicates: int = 0
    retries: int = 0
    dead_lettered: int = 0
    connected: bool = False
    last_error: str | None = None
    lag: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "processed": self.processed,
            "duplicates": self.duplicates,
            "retries": self.retries,
            "deadLettered": self.dead_lettered,
            "connected": self.connected,
            "lastError": self.last_error,
            "lag": dict(self.lag),
            "totalLag": sum(self.lag.values()),
        }


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
    ) -> None:
        self.settings = settings
        self.database = database
        self.handlers = handlers
        self.name = name
        self.prepare = prepare
        self.status = ConsumerStatus()
        self._stopping = False
        self._consumer: AIOKafkaConsumer | None = None

    # ---- one message -------------------------------------------------------------------
    def apply(self, topic: str, event: dict[str, Any]) -> bool:
        """Apply an event once; returns False when it had been applied already."""
        try:
            with self.database.write() as session:
                seen = session.execute(
                    select(ProcessedEvent.event_id).where(
                        ProcessedEvent.consumer == self.name,
                        ProcessedEvent.event_id == event["id"],
                    )
                ).first()
                if seen:
                    return False
                self.handlers[topic](session, event)
                session.execute(
                    insert(ProcessedEvent).values(
                        consumer=self.name, event_id=event["id"], processed_at=utcnow()
                    )
                )
        except IntegrityError:
            return False  # another runner applied it at the same moment
        return True

    async def handle(self, message: ConsumerRecord, dlq: AIOKafkaProducer) -> None:
        """Process one message: apply it, retry transient failures, dead-letter the rest."""
        try:
            event = parse_event(message.value or b"")
        except EnvelopeError as exc:
            await self._dead_letter(dlq, message, f"poison: {exc}", attempts=1)
            return
        attempt = 0
        while True:
            attempt += 1
            try:
                if self.prepare is not None:
                    event = await self.prepare(event)
                applied = await run_in_threadpool(self.apply, message.topic, event)
                if applied:
                    self.status.processed += 1
                else:
                    self.status.duplicates += 1
                return
            except Exception as exc:
                if attempt >= self.settings.consumer_max_attempts or self._stopping:
                    await self._dead_letter(dlq, message, f"{type(exc).__name__}: {exc}", attempt)
                    return
                self.status.retries += 1
                await asyncio.sleep(self.settings.consumer_backoff_seconds * 2 ** (attempt - 1))

    async def _dead_letter(
        self, dlq: AIOKafkaProducer, message: ConsumerRecord, reason: str, attempts: int
    ) -> None:
        headers = [
            *list(message.headers or []),
            ("dlq_error", reason[:500].encode()),
            ("dlq_attempts", str(attempts).encode()),
            ("dlq_source_topic", message.topic.encode()),
            ("dlq_source_offset", str(message.offset).encode()),
            ("dlq_consumer", self.name.encode()),
        ]
        await dlq.send_and_wait(
            f"{message.topic}.dlq", key=message.key, value=message.value, headers=headers
        )
        self.status.dead_lettered += 1
        log.warning("%s: message at %s:%s dead-lettered", self.name, message.topic, message.offset)

    # ---- the loop ----------------------------------------------------------------------
    async def run(self) -> None:
        """Consume until stopped; reconnects with backoff when the broker goes away."""
        backoff = 0.2
        topics = list(self.handlers)
        while not self._stopping:
            consumer = kafka.consumer(self.settings, *topics, group=self.name)
            dlq = kafka.producer(self.settings)
            try:
                await kafka.ensure_topics(self.settings, topics + [f"{t}.dlq" for t in topics])
                await consumer.start()
                await dlq.start()
                self._consumer = consumer
                self.status.connected = True
                backoff = 0.2
                await self._loop(consumer, dlq)
            except (TimeoutError, KafkaError, OSError) as exc:
                self.status.connected = False
                self.status.last_error = type(exc).__name__
                log.warning("%s: Kafka unavailable (%s); retrying", self.name, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5)
            finally:
                self._consumer = None
                for client in (consumer, dlq):
                    with contextlib.suppress(KafkaError, OSError):
                        await client.stop()

    async def _loop(self, consumer: AIOKafkaConsumer, dlq: AIOKafkaProducer) -> None:
        while not self._stopping:
            batches = await consumer.getmany(timeout_ms=200)
            for partition, messages in batches.items():
                done: int | None = None
                for message in messages:
                    if self._stopping:
                        break
                    await self.handle(message, dlq)
                    done = message.offset
                if done is not None:
                    # After the database commits: a crash in between replays, harmlessly.
                    await consumer.commit({partition: done + 1})
            await self._update_lag(consumer)

    async def _update_lag(self, consumer: AIOKafkaConsumer) -> None:
        for partition in consumer.assignment():
            highwater = consumer.highwater(partition)
            if highwater is None:
                continue
            position = await consumer.position(partition)
            self.status.lag[f"{partition.topic}[{partition.partition}]"] = max(
                highwater - position, 0
            )

    def stop(self) -> None:
        self._stopping = True
