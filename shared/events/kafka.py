"""aiokafka clients configured the same way everywhere (standard Kafka protocol only)."""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from shared.settings import ServiceSettings

log = logging.getLogger(__name__)


def producer(settings: ServiceSettings) -> AIOKafkaProducer:
    """A producer waiting for all in-sync replicas; idempotence as configured."""
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        acks="all",
        enable_idempotence=settings.kafka_idempotent_producer,
        linger_ms=2,
        request_timeout_ms=settings.kafka_request_timeout_ms,
        # Large enough for an envelope just under event_max_data_bytes plus its headers.
        max_request_size=max(1024 * 1024, settings.event_max_data_bytes + 64 * 1024),
        client_id=f"{settings.service_name}-relay",
    )


def consumer(settings: ServiceSettings, *topics: str, group: str | None) -> AIOKafkaConsumer:
    """A consumer with auto-commit off; offsets are committed after the database commit."""
    session = settings.kafka_session_timeout_ms
    return AIOKafkaConsumer(
        *topics,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        client_id=f"{settings.service_name}-consumer",
        max_poll_records=500,
        session_timeout_ms=session,
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
        heartbeat_interval_ms=max(session // 4, 100),
        # Kafka wants requests to outlast the session (a JoinGroup may take that long).
        request_timeout_ms=max(settings.kafka_request_timeout_ms, session + 5000),
        # Topics re-created after a broker restart are noticed within one request time-out.
        metadata_max_age_ms=settings.kafka_request_timeout_ms,
    )


def admin(settings: ServiceSettings) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        client_id=f"{settings.service_name}-admin",
        request_timeout_ms=settings.kafka_request_timeout_ms,
    )


async def ensure_topics(settings: ServiceSettings, topics: list[str]) -> None:
    """Create topics that do not exist yet (one partition keeps each resource's order)."""
    client = admin(settings)
    await client.start()
    try:
        existing = set(await client.list_topics())
        missing = [
            NewTopic(t, num_partitions=1, replication_factor=1) for t in topics if t not in existing
        ]
        if missing:
            try:
                await client.create_topics(missing)
            except TopicAlreadyExistsError:
                pass
            except KafkaError as exc:
                log.warning("could not create topics: %s", exc)
    finally:
        await client.close()


async def broker_answers(settings: ServiceSettings) -> bool:
    """Whether the broker answers a metadata request within the request time-out."""
    timeout = settings.kafka_request_timeout_ms / 1000
    client = admin(settings)
    try:
        await asyncio.wait_for(client.start(), timeout)
        await asyncio.wait_for(client.list_topics(), timeout)
        return True
    except Exception:
        return False
    finally:
        try:
            await asyncio.wait_for(client.close(), timeout)
        except Exception as exc:
            log.debug("closing the admin client failed: %s", exc)
