"""Compose a service's event machinery: outbox relay, replica consumer, catch-up at start."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import httpx
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
            # Namespaced like the topics, so environments sharing a cluster never mix groups.
            name=f"{settings.topic_prefix}{settings.service_name}-replicas",
            prepare=self.fetch_omitted,
        )
        if settings.resync_on_start:
            # At start, and whenever the broker turns out to have lost our offsets.
            self.consumer.on_connect = self.catch_up_if_behind
        # Tests may route the calls to owners through an in-process transport.
        self.http_transport: httpx.AsyncBaseTransport | None = None
        self._tasks: list[asyncio.Task[Any]] = []

    @property
    def enabled(self) -> bool:
        return bool(self.settings.kafka_bootstrap_servers)

    def owner_base(self, res_type: str) -> str:
        owner = self.registry.resources[res_type].owner
        return self.settings.peer_urls[owner].rstrip("/")

    def http_client(self, timeout: float = 30) -> httpx.AsyncClient:
        """A client for calls to the owners (vread of id-only events, `_history`)."""
        return httpx.AsyncClient(
            transport=self.http_transport,
            timeout=timeout,
            headers={"Accept": "application/fhir+json"},
        )

    async def fetch_omitted(self, event: dict[str, Any]) -> dict[str, Any]:
        """Fill in an id-only event's resource from its owner (raises to retry later)."""
        if "data" in event or event["type"].endswith(".deleted"):
            return event
        res_type, res_id = event["subject"].split("/", 1)
        url = f"{self.owner_base(res_type)}/{res_type}/{res_id}/_history/{event['versionid']}"
        async with self.http_client(timeout=10) as client:
            response = await client.get(url)
            response.raise_for_status()
        data = response.json()
        meta = data.get("meta") if isinstance(data, dict) else None
        if (
            not isinstance(meta, dict)
            or data.get("resourceType") != res_type
            or data.get("id") != res_id
            or meta.get("versionId") != event["versionid"]
        ):
            raise ValueError(f"{url} did not return {event['subject']} at the event's version")
        return {**event, "data": data}

    # ---- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        """Start the relay and the replica consumer (after catching up if behind)."""
        if not self.enabled:
            return
        if self.settings.relay_in_process:
            self._tasks.append(asyncio.create_task(self.relay.run(), name="outbox-relay"))
        if self.replicated:
            self._tasks.append(asyncio.create_task(self.consumer.run(), name="replica-consumer"))

    async def catch_up_if_behind(self) -> None:
        """Resync each replica over HTTP when the broker no longer knows our offsets."""
        for definition in self.replicated:
            try:
                if await self._has_committed_offset(definition.type):
                    continue
                await self._resync(definition.type)
            except Exception as exc:  # the consumer must start whatever happens here
                log.warning("catch-up of %s skipped: %s", definition.type, exc)

    async def _resync(self, res_type: str) -> int:
        since = await asyncio.to_thread(newest_replicated, self.database, res_type)
        async with self.http_client() as client:
            return await resync_from_owner(
                self.writer,
                self.database,
                self.owner_base(res_type),
                res_type,
                since=since,
                client=client,
            )

    async def _has_committed_offset(self, res_type: str) -> bool:
        """Whether our group has committed an offset on any partition of the type's topic."""
        topic = topic_for(self.settings.topic_prefix, res_type)
        client = kafka.consumer(self.settings, group=self.consumer.name)
        await client.start()
        try:
            await client.topics()
            partitions = client.partitions_for_topic(topic) or set()
            for partition in sorted(partitions):
                if await client.committed(TopicPartition(topic, partition)) is not None:
                    return True
            return False
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
        return {d.type: await self._resync(d.type) for d in self.replicated}

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
        try:
            pending: int | None = self.relay.pending()
        except Exception:  # the status must answer even when the database does not
            pending = None
        relay = self.relay.status
        consumer = None
        if self.replicated:
            consumer = {
                "group": self.consumer.name,
                "topics": list(self.consumer.handlers),
                **self.consumer.status.as_dict(),
            }
        return {
            "enabled": self.enabled,
            "topicPrefix": self.settings.topic_prefix,
            "relay": {
                "inProcess": self.settings.relay_in_process,
                "topics": list(self.relay.topics),
                "published": relay.published,
                "connected": relay.connected,
                "leader": relay.leader,
                "failures": relay.failures,
                "lastError": relay.last_error,
                "pending": pending,
            },
            "consumer": consumer,
        }
