"""aiokafka clients configured the same way everywhere (standard Kafka protocol only)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from aiokafka.helpers import create_ssl_context

from shared.settings import ServiceSettings

log = logging.getLogger(__name__)


class TopicsMissing(KafkaError):
    """Topics this service needs do not exist, and creating topics is not its job."""

    def __init__(self, service: str, topics: list[str]) -> None:
        super().__init__(
            f"topics {topics} do not exist and {service.upper()}_CREATE_TOPICS is off: "
            "create them (the KafkaTopic resources) first"
        )
        self.topics = topics


def security(settings: ServiceSettings) -> dict[str, Any]:
    """aiokafka's security options (TLS and SASL) from the settings, for every client."""
    protocol = settings.kafka_security_protocol
    options: dict[str, Any] = {"security_protocol": protocol}
    if protocol in ("SSL", "SASL_SSL"):
        # No CA file: the system's CAs, with host names checked either way.
        options["ssl_context"] = create_ssl_context(cafile=settings.kafka_ssl_cafile or None)
    if protocol.startswith("SASL_"):
        # aiokafka takes SCRAM's credentials through the `sasl_plain_*` options too.
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism
        options["sasl_plain_username"] = settings.kafka_sasl_username
        options["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value()
    return options


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
        **security(settings),
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
        **security(settings),
    )


def admin(settings: ServiceSettings) -> AIOKafkaAdminClient:
    """An admin client (topics, metadata) with the same security as the others."""
    return AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        client_id=f"{settings.service_name}-admin",
        request_timeout_ms=settings.kafka_request_timeout_ms,
        **security(settings),
    )


async def partition_counts(client: AIOKafkaAdminClient) -> dict[str, int]:
    """Every topic the broker has, with its number of partitions.

    Asks for all topics: a metadata request naming topics lets a broker that auto-creates
    topics create them.
    """
    return {
        entry["topic"]: len(entry["partitions"])
        for entry in await client.describe_topics()
        if entry.get("error_code", 0) == 0
    }


async def ensure_topics(settings: ServiceSettings, topics: list[str]) -> None:
    """Create missing topics with `topic_partitions` partitions (`create_topics` on), or raise
    TopicsMissing (off); a topic with fewer partitions is only reported, never changed."""
    client = admin(settings)
    await client.start()
    try:
        existing = await partition_counts(client)
        missing = [t for t in topics if t not in existing]
        if missing and not settings.create_topics:
            raise TopicsMissing(settings.service_name, missing)
        wanted = settings.topic_partitions
        for topic in topics:
            if topic in existing and existing[topic] < wanted:
                # Adding partitions moves keys to other partitions: an operator's decision.
                log.warning(
                    "topic %s has %d partitions, fewer than the %d configured; left as it is",
                    topic,
                    existing[topic],
                    wanted,
                )
        if missing:
            try:
                await client.create_topics(
                    [NewTopic(t, num_partitions=wanted, replication_factor=1) for t in missing]
                )
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
