"""Catch replicas up: from the owner's `_history?_since=` over HTTP, or by replaying a topic."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition
from sqlalchemy import func, select
from starlette.concurrency import run_in_threadpool

from shared.db.engine import Database
from shared.db.models import ResourceRow
from shared.events.envelope import EnvelopeError, parse_event, topic_for
from shared.events.replica import ReplicaWriter
from shared.fhir.dates import format_instant, utcnow
from shared.settings import ServiceSettings

log = logging.getLogger(__name__)
_BATCH = 500


def _version_of(entry: dict[str, Any]) -> int | None:
    etag = (entry.get("response") or {}).get("etag", "")
    digits = etag.removeprefix("W/").strip('"')
    return int(digits) if digits.isascii() and digits.isdigit() else None


def _subject(entry: dict[str, Any]) -> tuple[str, str] | None:
    resource = entry.get("resource")
    if isinstance(resource, dict) and resource.get("id"):
        return resource["resourceType"], resource["id"]
    parts = str(entry.get("fullUrl", "")).rstrip("/").split("/")
    return (parts[-2], parts[-1]) if len(parts) >= 2 else None


def newest_replicated(database: Database, res_type: str) -> datetime | None:
    """The latest lastUpdated we hold for a replicated type, where a resync can start."""
    with database.read() as session:
        return session.execute(
            select(func.max(ResourceRow.last_updated)).where(ResourceRow.res_type == res_type)
        ).scalar_one()


async def resync_from_owner(
    writer: ReplicaWriter,
    database: Database,
    owner_base: str,
    res_type: str,
    *,
    since: datetime | None,
    client: httpx.AsyncClient | None = None,
) -> int:
    """Apply every version the owner changed since `since`; returns versions applied."""
    params: dict[str, str] = {"_count": "1000", "_at": format_instant(utcnow())}
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
            response = await http.get(url, params=query)
            response.raise_for_status()
            bundle = response.json()
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
        if subject and version:
            versions.append((subject, version, entry.get("resource")))

    def apply(batch: list) -> int:
        with database.write() as session:
            return sum(
                writer.put_version(session, t, i, v, resource) for (t, i), v, resource in batch
            )

    applied = 0
    for start in range(0, len(versions), _BATCH):
        applied += await run_in_threadpool(apply, versions[start : start + _BATCH])
    log.info("resync %s from %s: %d versions applied", res_type, owner_base, applied)
    return applied


async def replay_topic(
    settings: ServiceSettings,
    writer: ReplicaWriter,
    database: Database,
    res_type: str,
    *,
    rebuild: bool = True,
    prepare: Any = None,
) -> int:
    """Rebuild a replica from the topic's first offset; returns events applied."""
    topic = topic_for(settings.topic_prefix, res_type)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    applied = 0
    try:
        await consumer.topics()  # loads the cluster metadata
        known = consumer.partitions_for_topic(topic) or {0}
        partitions = [TopicPartition(topic, p) for p in sorted(known)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        if rebuild:
            await run_in_threadpool(_clear, database, writer, res_type)
        while any(await consumer.position(p) < ends[p] for p in partitions):
            batches = await consumer.getmany(timeout_ms=1000)
            events = []
            for messages in batches.values():
                for message in messages:
                    try:
                        event = parse_event(message.value or b"")
                    except EnvelopeError:
                        continue  # poison messages are the DLQ's business, not the replica's
                    if event.get("dataomitted") and prepare is not None:
                        event = await prepare(event)
                    events.append(event)

            def apply(batch: list[dict[str, Any]]) -> int:
                count = 0
                with database.write() as session:
                    for event in batch:
                        if "data" in event or event["type"].endswith(".deleted"):
                            writer.apply_event(session, event)
                            count += 1
                return count

            applied += await run_in_threadpool(apply, events)
    finally:
        await consumer.stop()
    return applied


def _clear(database: Database, writer: ReplicaWriter, res_type: str) -> None:
    with database.write() as session:
        writer.clear(session, res_type)
