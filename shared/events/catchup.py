"""Catch replicas up: from the owner's `_history?_since=` over HTTP, or by replaying a topic."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition
from starlette.concurrency import run_in_threadpool

from shared.db.engine import Database
from shared.events import kafka
from shared.events.envelope import EnvelopeError, ResourceEvent, parse_event, topic_for
from shared.events.replica import ReplicaWriter
from shared.fhir import exact_json
from shared.fhir.dates import format_instant, utcnow
from shared.fhir.lexical import is_digits
from shared.fhir.store import ResourceStore
from shared.settings import ServiceSettings

log = logging.getLogger(__name__)
_BATCH = 500


def _version_of(entry: dict[str, Any]) -> int | None:
    etag = (entry.get("response") or {}).get("etag", "")
    digits = etag.removeprefix("W/").strip('"')
    return int(digits) if is_digits(digits) else None


def _subject(entry: dict[str, Any]) -> tuple[str, str] | None:
    resource = entry.get("resource")
    if isinstance(resource, dict) and resource.get("id"):
        return resource["resourceType"], resource["id"]
    parts = str(entry.get("fullUrl", "")).rstrip("/").split("/")
    return (parts[-2], parts[-1]) if len(parts) >= 2 else None


def newest_replicated(store: ResourceStore, res_type: str) -> datetime | None:
    """The latest lastUpdated we hold for a replicated type, where a resync can start."""
    with store.database.read() as session:
        return store.newest_change(session, res_type)


async def resync_from_owner(
    writer: ReplicaWriter,
    database: Database,
    owner_base: str,
    res_type: str,
    *,
    since: datetime | None,
    client: httpx.AsyncClient | None = None,
    page_size: int = 1000,
) -> int:
    """Apply every version the owner changed since `since`; returns versions applied."""
    # `_at` pins the history to now, so pages do not shift under writes made meanwhile.
    params: dict[str, str] = {"_count": str(page_size), "_at": format_instant(utcnow())}
    if since is not None:
        # A margin covers clock skew between writer and reader of lastUpdated.
        params["_since"] = format_instant(since - timedelta(seconds=5))
    own_client = client is None
    http = client or httpx.AsyncClient(timeout=30)
    entries: list[dict[str, Any]] = []
    try:
        url: str | None = f"{owner_base}/{res_type}/_history"
        query: dict[str, str] | None = params
        while url:
            response = await http.get(
                url, params=query, headers={"Accept": "application/fhir+json"}
            )
            response.raise_for_status()
            bundle = exact_json.loads(response.content)
            entries.extend(bundle.get("entry") or [])
            url = next(
                (ln["url"] for ln in bundle.get("link", []) if ln["relation"] == "next"), None
            )
            query = None
    finally:
        if own_client:
            await http.aclose()
    # History comes newest first; apply oldest first so each id ends at its latest version.
    versions = []
    for entry in reversed(entries):
        subject, version = _subject(entry), _version_of(entry)
        if subject and version and subject[0] == res_type:
            # The owner's time of the change (a deletion has no meta.lastUpdated).
            when = (entry.get("response") or {}).get("lastModified")
            versions.append((subject, version, entry.get("resource"), when))

    def apply(batch: list) -> int:
        with database.write() as session:
            return sum(
                writer.put_version(session, t, i, v, resource, when)
                for (t, i), v, resource, when in batch
            )

    applied = 0
    for start in range(0, len(versions), _BATCH):
        applied += await run_in_threadpool(apply, versions[start : start + _BATCH])
    log.info("resync %s from %s: %d versions applied", res_type, owner_base, applied)
    return applied


async def _read_until(
    consumer: AIOKafkaConsumer,
    partitions: list[TopicPartition],
    ends: dict[TopicPartition, int],
    prepare: Any,
    *,
    idle_timeout: float = 60,
) -> list[dict[str, Any]]:
    """The events from the consumer's positions up to the end of each partition.

    The end is `ends` or, when larger, the high-water mark of the first fetch: some brokers
    (Tansu 0.6) answer ListOffsets with the last batch's base offset + 1, short of the end.
    """
    events: list[dict[str, Any]] = []
    target = dict(ends)
    learned: set[TopicPartition] = set()
    deadline = time.monotonic() + idle_timeout
    while any([await consumer.position(p) < target[p] for p in partitions]):
        if time.monotonic() > deadline:
            raise TimeoutError("the topic could not be read to its end")
        batches = await consumer.getmany(*partitions, timeout_ms=500)
        for partition in partitions:
            highwater = consumer.highwater(partition)
            if partition not in learned and highwater is not None:
                learned.add(partition)
                target[partition] = max(target[partition], highwater)
        for partition, messages in batches.items():
            for message in messages:
                if message.offset >= target[partition]:
                    continue  # beyond this pass; the next one reads it
                deadline = time.monotonic() + idle_timeout
                try:
                    event = parse_event(message.value or b"")
                except EnvelopeError:
                    continue  # poison messages are the DLQ's business, not the replica's
                if event.dataomitted and prepare is not None:
                    event = await prepare(event)
                events.append(event)
        for partition in partitions:
            # getmany may have fetched past the end of this pass: come back to it.
            if await consumer.position(partition) > target[partition]:
                consumer.seek(partition, target[partition])
    return events


def _apply_events(writer: ReplicaWriter, session: Any, events: list[ResourceEvent]) -> int:
    count = 0
    for event in events:
        if event.complete:
            count += bool(writer.apply_event(session, event))
    return count


async def replay_topic(
    settings: ServiceSettings,
    writer: ReplicaWriter,
    database: Database,
    res_type: str,
    *,
    rebuild: bool = True,
    prepare: Any = None,
) -> int:
    """Rebuild a replica from the topic's first offset; returns versions applied.

    The replica is cleared and refilled in one transaction, so readers never see it half
    built; a second pass then applies what arrived meanwhile (and what the live consumer
    may have applied before the rebuild cleared it). A missing topic clears nothing.
    """
    topic = topic_for(settings.topic_prefix, res_type)
    consumer = kafka.consumer(settings, group=None)
    await consumer.start()
    try:
        await consumer.topics()  # loads the cluster metadata
        known = consumer.partitions_for_topic(topic)
        if not known:
            log.warning("replay of %s: topic %s does not exist; nothing replayed", res_type, topic)
            return 0
        partitions = [TopicPartition(topic, p) for p in sorted(known)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        events = await _read_until(consumer, partitions, ends, prepare)

        def rebuild_all() -> int:
            with database.write() as session:
                if rebuild:
                    writer.clear(session, res_type)
                return _apply_events(writer, session, events)

        applied = await run_in_threadpool(rebuild_all)
        # What arrived (or was consumed live) while the first pass ran.
        later_ends = await consumer.end_offsets(partitions)
        later = await _read_until(consumer, partitions, later_ends, prepare)

        def merge() -> int:
            with database.write() as session:
                return _apply_events(writer, session, later)

        if later:
            applied += await run_in_threadpool(merge)
    finally:
        await consumer.stop()
    log.info("replay %s from %s: %d versions applied", res_type, topic, applied)
    return applied
