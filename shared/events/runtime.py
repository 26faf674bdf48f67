"""Compose a service's event machinery: outbox relay, replica consumer, catch-up at start."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import datetime, timedelta
from typing import Any

import httpx
from aiokafka.structs import TopicPartition
from sqlalchemy.orm import Session

from shared.auth.client_credentials import ClientCredentials
from shared.db.engine import Database
from shared.events import kafka
from shared.events.catchup import newest_replicated, replay_topic, resync_from_owner
from shared.events.consumer import ConsumerRunner, Handler
from shared.events.describe import describe
from shared.events.envelope import ResourceEvent, topic_for
from shared.events.healing import ReplicaHealer
from shared.events.reactions import ReactionContext
from shared.events.relay import OutboxRelay
from shared.events.replica import ReplicaWriter
from shared.fhir import exact_json
from shared.fhir.dates import utcnow
from shared.fhir.errors import FHIRError
from shared.fhir.interactions import Interactions
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
        interactions: Interactions | None = None,
    ) -> None:
        self.settings = settings
        # Reactions write through the same interactions as HTTP requests.
        self.interactions = interactions
        self.registry = registry
        self.database = database
        self.writer = ReplicaWriter(store)
        owned = [d.type for d in registry.resources.values() if d.owner == registry.service]
        self.replicated = [d for d in registry.resources.values() if d.owner != registry.service]
        unreachable = sorted({d.owner for d in self.replicated} - set(settings.peer_urls))
        if unreachable and self.enabled:
            # Caught at start: otherwise the first id-only event or catch-up of their types
            # would fail far from the cause.
            raise ValueError(
                f"peer_urls lacks {', '.join(unreachable)}, owner(s) of replicated types; "
                "set <SERVICE>_PEER_URLS"
            )
        self.relay = OutboxRelay(
            settings, database, [topic_for(settings.topic_prefix, t) for t in owned]
        )
        replica_topics = {topic_for(settings.topic_prefix, d.type): d.type for d in self.replicated}
        self.healer = ReplicaHealer(
            settings,
            store,
            replica_topics,
            self.resync,
            self.owner_base,
            self.http_client,
        )
        self.consumer = ConsumerRunner(
            settings,
            database,
            {topic: self._replica_handler(topic) for topic in replica_topics},
            # Namespaced like the topics, so environments sharing a cluster never mix groups.
            name=f"{settings.topic_prefix}{settings.service_name}-replicas",
            prepare=self.fetch_omitted,
        )
        if settings.resync_on_start:
            # At start, and whenever the broker turns out to have lost our offsets.
            self.consumer.on_connect = self.catch_up_if_behind
        # Tests may route the calls to owners through an in-process transport.
        self.http_transport: httpx.AsyncBaseTransport | None = None
        # This service's own token for those calls (None: none sent); tests may swap it.
        self.peer_auth: httpx.Auth | None = ClientCredentials.from_settings(settings)
        self._tasks: list[asyncio.Task[Any]] = []
        self._consumer_task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        # Why liveness fails (None: alive); set by the watchdog.
        self.stalled: str | None = None

    def _replica_handler(self, topic: str) -> Handler:
        def apply(session: Session, event: ResourceEvent) -> None:
            self.writer.apply_event(session, event)
            # Counted even when the version was old news: the number arrived all the same.
            self.healer.tracker.observe(session, topic, event)
            reactions = self.registry.reactions.get(event.type, ())
            if reactions and self.interactions is not None:
                context = ReactionContext(session, self.interactions, event)
                for reaction in reactions:
                    reaction(context)

        return apply

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
            auth=self.peer_auth,
            timeout=timeout,
            headers={"Accept": "application/fhir+json"},
        )

    async def fetch_omitted(self, event: ResourceEvent) -> ResourceEvent:
        """Fill in an id-only event's resource from its owner (raises to retry later)."""
        if event.complete:
            return event
        res_type, res_id = event.res_type, event.res_id
        url = f"{self.owner_base(res_type)}/{res_type}/{res_id}/_history/{event.versionid}"
        async with self.http_client(timeout=10) as client:
            response = await client.get(url)
            response.raise_for_status()
        data = exact_json.loads(response.content)
        meta = data.get("meta") if isinstance(data, dict) else None
        if (
            not isinstance(meta, dict)
            or data.get("resourceType") != res_type
            or data.get("id") != res_id
            or meta.get("versionId") != event.versionid
        ):
            raise ValueError(f"{url} did not return {event.subject} at the event's version")
        return event.with_data(data)

    async def fetch_replica(self, res_type: str, res_id: str) -> bool:
        """Read one replicated resource at its owner and store that version in the replica:
        True when it is there now. False when the owner has none (404, 410) or no owner URL
        is configured; a 503 (FHIRError) when the owner cannot answer. Used when a write needs
        a resource whose event has not arrived yet (rules.MissingReplica); works with or
        without a broker."""
        definition = self.registry.get(res_type)
        if definition is None or definition.owner == self.registry.service:
            return False
        if definition.owner not in self.settings.peer_urls:
            return False
        url = f"{self.owner_base(res_type)}/{res_type}/{res_id}"
        try:
            async with self.http_client(timeout=5) as client:
                response = await client.get(url)
        except httpx.HTTPError as exc:
            # The type and the owner, never the id or the URL (patient data, addresses).
            log.warning(
                "lookup of a %s at %s failed: %s", res_type, definition.owner, describe(exc)
            )
            raise _owner_unavailable(definition.owner, res_type, res_id) from None
        if response.status_code in (404, 410):
            return False
        if response.status_code != 200:
            log.warning(
                "lookup of a %s at %s answered %d", res_type, definition.owner, response.status_code
            )
            raise _owner_unavailable(definition.owner, res_type, res_id)
        data = exact_json.loads(response.content)
        meta = data.get("meta") if isinstance(data, dict) else None
        version = meta.get("versionId") if isinstance(meta, dict) else None
        if (
            data.get("resourceType") != res_type
            or data.get("id") != res_id
            or not isinstance(version, str)
            or not version.isdigit()
        ):
            raise _owner_unavailable(definition.owner, res_type, res_id)

        def apply() -> None:
            with self.database.write() as session:
                self.writer.put_version(session, res_type, res_id, int(version), data)

        await asyncio.to_thread(apply)
        return True

    # ---- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        """Start the relay and the replica consumer (after catching up if behind)."""
        if not self.enabled:
            return
        self._stopping.clear()
        if self.settings.relay_in_process:
            self._tasks.append(asyncio.create_task(self.relay.run(), name="outbox-relay"))
        if self.replicated:
            self._start_consumer()
            self._tasks.append(
                asyncio.create_task(self.healer.run(self._stopping), name="replica-healer")
            )
            self._tasks.append(asyncio.create_task(self._watch(), name="consumer-watchdog"))

    def _start_consumer(self) -> None:
        self._consumer_task = asyncio.create_task(self.consumer.run(), name="replica-consumer")

    async def _watch(self) -> None:
        """Keep the consumer running, and decide whether it is stalled (liveness)."""
        period = min(5.0, self.settings.consumer_stall_s / 4)
        while not self._stopping.is_set():
            task = self._consumer_task
            if task is not None and task.done() and not self._stopping.is_set():
                # The runner never returns by design; if it did, start a new one.
                reason = "ended" if task.cancelled() else repr(task.exception())
                log.error("replica consumer %s unexpectedly; starting a new one", reason)
                self.consumer.status.enter("waiting", f"the consumer task {reason}"[:500])
                self._start_consumer()
            try:
                self.stalled = await self._stall_reason()
            except Exception as exc:
                log.warning("stall check failed: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=period)

    async def _stall_reason(self) -> str | None:
        """Why the consumer counts as stalled, or None. A consumer that cannot consume because
        the broker is down is not stalled: a restart would not bring the broker back."""
        status = self.consumer.status
        if status.state in ("catching-up", "stopped"):
            return None
        idle = time.monotonic() - status.last_poll
        if idle <= self.settings.consumer_stall_s:
            return None
        if not await kafka.broker_answers(self.settings):
            return None
        return (
            f"the replica consumer has not consumed for {idle:.0f} s although the broker "
            f"answers (state {status.state}: {status.reason or 'no error'})"
        )[:500]

    async def catch_up_if_behind(self) -> None:
        """Resync each replica over HTTP when it cannot trust its topic: the broker no longer
        knows our offsets, or the store is empty or older than the topic's retention (a
        replaced database whose group offsets survived)."""
        self.consumer.status.enter("catching-up", self.consumer.status.reason)
        retention = timedelta(hours=self.settings.kafka_topic_retention_hours)
        for definition in self.replicated:
            try:
                newest = await asyncio.to_thread(
                    newest_replicated, self.writer.store, definition.type
                )
                if newest is None or newest < utcnow() - retention:
                    why = "empty" if newest is None else "older than the topic's retention"
                    versions = await self.resync(definition.type, newest)
                    self.healer.status.start_resyncs += 1
                    log.info(
                        "replica %s was %s: %d versions resynced", definition.type, why, versions
                    )
                    continue
                if await self._has_committed_offset(definition.type):
                    continue
                await self.resync(definition.type, newest)
            except Exception as exc:  # the consumer must start whatever happens here
                log.warning("catch-up of %s skipped: %s", definition.type, exc)

    async def resync(self, res_type: str, since: datetime | None) -> int:
        """Apply every version the owner changed since `since` (None: its whole history)."""
        async with self.http_client() as client:
            return await resync_from_owner(
                self.writer,
                self.database,
                self.owner_base(res_type),
                res_type,
                since=since,
                client=client,
            )

    async def _resync_from_newest(self, res_type: str) -> int:
        since = await asyncio.to_thread(newest_replicated, self.writer.store, res_type)
        return await self.resync(res_type, since)

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
        self._stopping.set()
        self.relay.stop()
        self.consumer.stop()
        if self._consumer_task is not None:
            self._tasks.append(self._consumer_task)
            self._consumer_task = None
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
        return {d.type: await self._resync_from_newest(d.type) for d in self.replicated}

    async def replay_all(self) -> dict[str, int]:
        """Rebuild every replica by replaying its topic from offset 0."""
        return {
            d.type: await replay_topic(
                self.settings, self.writer, self.database, d.type, prepare=self.fetch_omitted
            )
            for d in self.replicated
        }

    def missing_topics(self) -> list[str]:
        """Topics the relay or the consumer needs that do not exist (creation off)."""
        missing = set(self.relay.status.missing_topics)
        if self.replicated:
            missing |= set(self.consumer.status.missing_topics)
        return sorted(missing)

    def status(self) -> dict[str, Any]:
        """Relay and consumer state, for the status endpoint."""
        try:
            pending: int | None = self.relay.pending()
        except Exception:  # the status must answer even when the database does not
            pending = None
        relay = self.relay.status
        consumer = None
        if self.replicated:
            try:
                gaps: dict[str, Any] | None = self.healer.tracker.open_gaps(self.database)
            except Exception:
                gaps = None
            consumer = {
                "group": self.consumer.name,
                "topics": list(self.consumer.handlers),
                **self.consumer.status.as_dict(),
                "stalled": self.stalled,
                "gaps": gaps,
                "healing": self.healer.status.as_dict(),
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
                "missingTopics": list(relay.missing_topics),
            },
            "consumer": consumer,
        }


def _owner_unavailable(owner: str, res_type: str, res_id: str) -> FHIRError:
    return FHIRError(
        503,
        f"{res_type}/{res_id} is not known here yet and {owner}, its owner, could not be asked; "
        "retry",
        code="transient",
        headers={"Retry-After": "5"},
    )
