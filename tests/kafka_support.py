"""Helpers for the event tests: a real broker, running services, topic readers, polling."""

from __future__ import annotations

import asyncio
import inspect
import itertools
import json
import os
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from aiokafka.structs import TopicPartition
from fastapi import FastAPI
from sqlalchemy import select

from shared.db.engine import Database
from shared.db.models import ResourceRow, VersionRow
from shared.events.runtime import EventRuntime
from tests.auth_support import StaffBearer, staff_headers
from tests.conftest import SERVICES, make_settings
from tooling.broker import Broker

T = TypeVar("T")
FHIR_JSON = {"Accept": "application/fhir+json", "Content-Type": "application/fhir+json"}
# The dev broker makes a group's first join wait about half the session timeout.
SESSION_TIMEOUT_MS = "1500"
_databases = itertools.count()


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[Broker]:
    """One Tansu broker for the session; tests isolate themselves by topic prefix."""
    previous = os.environ.get("KAFKA_SESSION_TIMEOUT_MS")
    os.environ["KAFKA_SESSION_TIMEOUT_MS"] = SESSION_TIMEOUT_MS
    try:
        with Broker() as broker:
            yield broker
    finally:
        if previous is None:
            os.environ.pop("KAFKA_SESSION_TIMEOUT_MS", None)
        else:
            os.environ["KAFKA_SESSION_TIMEOUT_MS"] = previous


@pytest.fixture
def own_broker() -> Iterator[Broker]:
    """A broker of one test alone, since the test stops, kills or restarts it."""
    previous = os.environ.get("KAFKA_SESSION_TIMEOUT_MS")
    os.environ["KAFKA_SESSION_TIMEOUT_MS"] = SESSION_TIMEOUT_MS
    broker = Broker().start()
    try:
        yield broker
    finally:
        broker.stop()
        if previous is None:
            os.environ.pop("KAFKA_SESSION_TIMEOUT_MS", None)
        else:
            os.environ["KAFKA_SESSION_TIMEOUT_MS"] = previous


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An app with its lifespan running, and a FHIR client of it."""
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://testserver/fhir",
            headers={**FHIR_JSON, **staff_headers()},
            timeout=60,
        ) as client,
    ):
        yield client


@pytest.fixture
def topic_prefix() -> str:
    """Topics (and consumer groups) of this test only."""
    return f"t{uuid.uuid4().hex[:12]}.fhir."


@pytest.fixture
def new_database(tmp_path: Path, sqlite_template: Path) -> Callable[[str], str]:
    """Factory: a fresh, migrated SQLite database per call (one per service)."""

    def make(name: str = "db") -> str:
        path = tmp_path / f"{name}-{next(_databases)}.db"
        shutil.copy(sqlite_template, path)
        return f"sqlite:///{path}"

    return make


# ---- polling -----------------------------------------------------------------------------
async def eventually(
    check: Callable[[], T] | Callable[[], Awaitable[T]],
    *,
    timeout: float = 20,
    interval: float = 0.05,
    what: str = "the condition",
) -> T:
    """Poll `check` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = check()
            if inspect.isawaitable(last):
                last = await last
        except (AssertionError, httpx.HTTPError) as exc:
            last = exc
        else:
            if last:
                return last
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not hold within {timeout} s; last: {last!r}")
        await asyncio.sleep(interval)


# ---- in-process services ----------------------------------------------------------------
@dataclass
class Running:
    """A service app with its lifespan (so its EventRuntime) running, and a client."""

    app: FastAPI
    client: httpx.AsyncClient

    @property
    def events(self) -> EventRuntime:
        return self.app.state.events

    @property
    def database(self) -> Database:
        return self.app.state.fhir.database

    def transport(self) -> httpx.ASGITransport:
        return httpx.ASGITransport(app=self.app)


def build_app(service: str, database_url: str, **overrides: Any) -> FastAPI:
    _, factory = SERVICES[service]
    app = factory(make_settings(service, database_url, **overrides))
    app.state.events.peer_auth = StaffBearer()
    return app


@asynccontextmanager
async def running(
    service: str,
    database_url: str,
    *,
    owners: dict[str, Running] | None = None,
    **overrides: Any,
) -> AsyncIterator[Running]:
    """Run a service in process, lifespan included; `owners` answer its HTTP catch-up calls."""
    if not owners:
        # Nobody to catch up from (and never whatever listens on the default peer ports).
        overrides.setdefault("resync_on_start", False)
    if owners:
        # Every owner must have a URL; all calls go to the one in-process owner's transport.
        overrides.setdefault("peer_urls", dict.fromkeys(SERVICES, "http://testserver/fhir"))
    app = build_app(service, database_url, **overrides)
    if owners:
        # One in-process owner is enough for the services the tests run.
        (owner,) = owners.values()
        app.state.events.http_transport = owner.transport()
    async with serving(app) as client:
        yield Running(app, client)


@asynccontextmanager
async def programme(
    broker: Broker, topic_prefix: str, new_database: Callable[[str], str]
) -> AsyncIterator[tuple[Running, Running, Running]]:
    """Intake, scheduling and outcomes in process, each on its own database, on `broker`."""
    settings = {
        "kafka_bootstrap_servers": broker.bootstrap,
        "topic_prefix": topic_prefix,
        "resync_on_start": False,
    }
    async with (
        running("intake", new_database("intake"), **settings) as intake,
        running("scheduling", new_database("scheduling"), **settings) as scheduling,
        running("outcomes", new_database("outcomes"), **settings) as outcomes,
    ):
        yield intake, scheduling, outcomes


# ---- Kafka --------------------------------------------------------------------------------
async def topic_partitions(bootstrap: str, topic: str) -> list[TopicPartition]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        await consumer.topics()
        return [
            TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])
        ]
    finally:
        await consumer.stop()


async def read_topic(
    bootstrap: str, topic: str, *, count: int, timeout: float = 20
) -> list[ConsumerRecord]:
    """At least `count` messages of a topic from its start (all of them that are there then).

    Fails when fewer arrive in time; the result then holds everything the topic has, so
    `len(result) == count` also proves nothing else was published.
    """
    deadline = time.monotonic() + timeout
    partitions: list[TopicPartition] = []
    while not partitions:
        partitions = await topic_partitions(bootstrap, topic)
        if not partitions:
            if time.monotonic() > deadline:
                raise AssertionError(f"topic {topic} does not exist")
            await asyncio.sleep(0.1)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    records: list[ConsumerRecord] = []
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        while True:
            ends = await consumer.end_offsets(partitions)
            # Tansu's ListOffsets may stop short of the last batch's end: use the high-water too.
            at_end = all(
                [
                    await consumer.position(p) >= max(ends[p], consumer.highwater(p) or 0)
                    for p in partitions
                ]
            )
            if len(records) >= count and at_end:
                break
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{len(records)} of {count} messages on {topic} within {timeout} s"
                )
            batches = await consumer.getmany(timeout_ms=100)
            for messages in batches.values():
                records.extend(messages)
    finally:
        await consumer.stop()
    records.sort(key=lambda r: (r.partition, r.offset))
    return records


async def produce(
    bootstrap: str, topic: str, messages: list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]]
) -> None:
    """Send (key, value, headers) messages, in order, and wait for the broker's acks."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for key, value, headers in messages:
            await producer.send_and_wait(topic, value=value, key=key, headers=headers)
    finally:
        await producer.stop()


def payloads(records: list[ConsumerRecord]) -> list[dict[str, Any]]:
    return [json.loads(r.value) for r in records]


def headers_of(record: ConsumerRecord) -> dict[str, bytes]:
    return dict(record.headers or [])


# ---- database snapshots --------------------------------------------------------------------
def snapshot(database: Database, res_type: str) -> dict[str, Any]:
    """What a replica holds of a type: current rows and every version, comparable."""
    with database.read() as session:
        current = {
            row.res_id: (
                row.version_id,
                row.deleted,
                row.last_updated,
                json.loads(row.content) if row.content else None,
            )
            for row in session.execute(
                select(ResourceRow).where(ResourceRow.res_type == res_type)
            ).scalars()
        }
        versions = sorted(
            (row.res_id, row.version_id, row.deleted, json.loads(row.content or "null"))
            for row in session.execute(
                select(VersionRow).where(VersionRow.res_type == res_type)
            ).scalars()
        )
    return {"current": current, "versions": versions}
