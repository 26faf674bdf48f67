"""The outbox relay: publishes unsent outbox rows to Kafka in order, then marks them sent."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from aiokafka.errors import KafkaError
from sqlalchemy import select, text, update
from starlette.concurrency import run_in_threadpool

from shared.db.engine import Database
from shared.db.models import OutboxRow
from shared.events import kafka
from shared.fhir.dates import utcnow
from shared.settings import ServiceSettings

log = logging.getLogger(__name__)
_LEADER_LOCK = 727275


@dataclass
class RelayStatus:
    published: int = 0
    failures: int = 0
    last_error: str | None = None
    connected: bool = False
    leader: bool = False
    extra: dict = field(default_factory=dict)


class OutboxRelay:
    """One relay per database publishes (a PostgreSQL advisory lock elects it)."""

    def __init__(self, settings: ServiceSettings, database: Database, topics: list[str]) -> None:
        self.settings = settings
        self.database = database
        self.topics = topics
        self.status = RelayStatus()
        self._wake = asyncio.Event()
        self._stopping = False
        self._leader_connection = None

    def wake(self) -> None:
        """Called after a write commits, so events leave without waiting for the next poll."""
        self._wake.set()

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

    def _mark_sent(self, pks: list[int]) -> None:
        with self.database.write() as session:
            session.execute(update(OutboxRow).where(OutboxRow.pk.in_(pks)).values(sent_at=utcnow()))

    def pending(self) -> int:
        """Outbox rows not yet published."""
        from sqlalchemy import func

        with self.database.read() as session:
            return int(
                session.execute(
                    select(func.count()).select_from(OutboxRow).where(OutboxRow.sent_at.is_(None))
                ).scalar_one()
            )

    def _try_lead(self) -> bool:
        if self.database.is_sqlite:
            return True
        if self._leader_connection is None:
            self._leader_connection = self.database.write_engine.connect()
        got = self._leader_connection.execute(
            text("SELECT pg_try_advisory_lock(:k)"), {"k": _LEADER_LOCK}
        ).scalar_one()
        self._leader_connection.commit()
        return bool(got)

    async def publish_pending(self, producer) -> int:  # type: ignore[no-untyped-def]
        """Publish everything unsent now; returns how many rows were published."""
        total = 0
        while True:
            rows = await run_in_threadpool(self._fetch)
            if not rows:
                return total
            futures = [
                await producer.send(
                    row.topic,
                    key=row.key.encode(),
                    value=row.payload.encode(),
                    headers=[
                        ("ce_id", row.event_id.encode()),
                        ("ce_type", row.event_type.encode()),
                        ("traceparent", (row.traceparent or "").encode()),
                    ],
                )
                for row in rows
            ]
            await asyncio.gather(*futures)
            await run_in_threadpool(self._mark_sent, [row.pk for row in rows])
            total += len(rows)
            self.status.published += len(rows)

    async def run(self, poll_seconds: float = 0.5) -> None:
        """Relay until stopped; Kafka outages are retried with backoff and lose nothing."""
        backoff = 0.2
        while not self._stopping:
            producer = kafka.producer(self.settings)
            try:
                if not await run_in_threadpool(self._try_lead):
                    self.status.leader = False
                    await asyncio.sleep(2)
                    continue
                self.status.leader = True
                await producer.start()
                await kafka.ensure_topics(self.settings, self.topics)
                self.status.connected = True
                backoff = 0.2
                while not self._stopping:
                    # Clear first: a write committing while we publish wakes the next round.
                    self._wake.clear()
                    await self.publish_pending(producer)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), timeout=poll_seconds)
            except (TimeoutError, KafkaError, OSError) as exc:
                self.status.connected = False
                self.status.failures += 1
                self.status.last_error = type(exc).__name__
                log.warning("relay: Kafka unavailable (%s); retrying in %.1f s", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5)
            finally:
                with contextlib.suppress(KafkaError, OSError):
                    await producer.stop()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._leader_connection is not None:
            self._leader_connection.close()
            self._leader_connection = None
