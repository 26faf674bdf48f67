"""Compose a service's event machinery: outbox relay, replica consumer, catch-up at start."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import httpx
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition

from shared.db.engine import Database
from shared.events import kafka
from shared.events.catchup import newest_replicated, replay_topic, resync_from_owner
from shared.events.consumer import ConsumerRunner
from shared.events.envelope import topic_for
from shared.events.outbox import Outbox
from shared.events.relay import OutboxRelay
from shared.events.replica import ReplicaWriter
from shared.fhir.registry import Registry
from shared.fhir.store import ResourceStore
from shared.settings import ServiceSettings

log = logging.getLogger(__name__)


class EventRuntime:
    """Everything event-related one service runs; inert when no broker is configured."""

    def __init__(
        self,
        settings: ServiceSettings,
        registry: Registry,
        database: Database,
        store: ResourceStore,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.database = database
        self.outbox = Outbox(
            registry,
            source=f"urn:kemdr:{settings.service_name}",
            topic_prefix=settings.topic_prefix,
            max_data_bytes=settings.event_max_data_bytes,
        )
        store.listeners.append(self.outbox)
        self.writer = ReplicaWriter(store)
        owned = [d.type for d in registry.resources.values() if d.owner == registry.service]
        self.replicated = [d for d in registry.resources.values() if d.owner != registry.service]
        self.relay = OutboxRelay(
            settings, database, [topic_for(settings.topic_prefix, t) for t in owned]
        )
        self.consumer = ConsumerRunner(
            settings,
            database,
            {
                topic_for(settings.topic_prefix, d.type): self.writer.apply_event
                for d in self.replicated
            },
            name=f"{settings.service_name}-replicas",
            prepare=self.fetch_omitted,
        )
        self._tasks: list[asyncio.Task[Any]] = []

    @property
    def enabled(self) -> bool:
        return bool(self.settings.kafka_bootstrap_servers)

    def owner_base(self, res_type: str) -> str:
        owner = self.registry.resources[res_type].owner
        return self.settings.peer_urls[owner].rstrip("/")

    async def fetch_omitted(self, event: dict[str, Any]) -> dict[str, Any]:
        """Fill in an id-only event's resource from its owner (raises to retry later)."""
        if "data" in event or event["type"].endswith(".deleted"):
            return event
        res_type, res_id = event["subject"].split("/", 1)
        url = f"{self.owner_base(res_type)}/{res_type}/{res_id}/_history/{event['versionid']}"
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.get(url)
            response.raise_for_status()
        return {**event, "data": response.json()}

    # ---- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        """Start the relay and the replica consumer (after catching up if behind)."""
        if not self.enabled:
            return
        if self.settings.relay_in_process:
            self._tasks.append(asyncio.create_task(self.relay.run(), name="outbox-relay"))
        if self.replicated:
            self._tasks.append(asyncio.create_task(self._consume(), name="replica-consumer"))

    async def _consume(self) -> None:
        if self.settings.resync_on_start:
            await self.catch_up_if_behind()
        await self.consumer.run()

    async def catch_up_if_behind(self) -> None:
        """Resync each replica over HTTP when the broker no longer knows our offsets."""
        for definition in self.replicated:
            try:
                if await self._has_committed_offset(definition.type):
                    continue
                since = await asyncio.to_thread(newest_replicated, self.database, definition.type)
                await resync_from_owner(
                    self.writer,
                    self.database,
                    self.owner_base(definition.type),
                    definition.type,
                    since=since,
                )
            except (httpx.HTTPError, KafkaError, OSError) as exc:
                log.warning("catch-up of %s skipped: %s", definition.type, exc)

    async def _has_committed_offset(self, res_type: str) -> bool:
        topic = topic_for(self.settings.topic_prefix, res_type)
        client = kafka.consumer(self.settings, group=self.consumer.name)
        await client.start()
        try:
            return await client.committed(TopicPartition(topic, 0)) is not None
        finally:
            await client.stop()

    async def stop(self) -> None:
        """Stop gracefully: the current message finishes and its offset is committed."""
        self.relay.stop()
        self.consumer.stop()
        for task in self._tasks:
            try:
                await asyncio.wait_for(task, timeout=10)
            except (TimeoutError, asyncio.CancelledError):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._tasks.clear()

    # ---- commands ----------------------------------------------------------------------
    async def resync_all(self) -> dict[str, int]:
        """Resynchronise every replica from its owner, from its newest version on."""
        done = {}
        for definition in self.replicated:
            since = await asyncio.to_thread(newest_replicated, self.database, definition.type)
            done[definition.type] = await resync_from_owner(
                self.writer,
                self.database,
                self.owner_base(definition.type),
                definition.type,
                since=since,
            )
        return done

    async def replay_all(self) -> dict[str, int]:
        """Rebuild every replica by replaying its topic from offset 0."""
        return {
            d.type: await replay_topic(
                self.settings, self.writer, self.database, d.type, prepare=self.fetch_omitted
            )
            for d in self.replicated
        }

    def status(self) -> dict[str, Any]:
        """Relay and consumer state, for the status endpoint."""
        return {
            "enabled": self.enabled,
            "relay": {
                "inProcess": self.settings.relay_in_process,
                "published": self.relay.status.published,
                "connected": self.relay.status.connected,
                "failures": self.relay.status.failures,
                "pending": self.relay.pending(),
            },
            "consumer": self.consumer.status.as_dict() if self.replicated else None,
        }
