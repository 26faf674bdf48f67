"""The consumer runner never ends while the service runs; a stalled one fails liveness."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from aiokafka.errors import KafkaConnectionError
from sqlalchemy.exc import OperationalError

from shared.events import consumer as consumer_module
from shared.events.consumer import ConsumerRunner
from shared.events.describe import describe
from tests import kafka_support
from tests.conftest import make_settings
from tests.kafka_support import eventually, running
from tooling.broker import Broker

topic_prefix = kafka_support.topic_prefix
new_database = kafka_support.new_database


class FakeConsumer:
    """A Kafka consumer whose first poll fails and whose stop raises CancelledError, as
    aiokafka's did after a broker outage (from its fetcher's close)."""

    made: list[FakeConsumer] = []

    def __init__(self) -> None:
        self.polls = 0
        FakeConsumer.made.append(self)

    async def start(self) -> None:
        return None

    async def getmany(self, timeout_ms: int = 0) -> dict[Any, Any]:
        self.polls += 1
        if len(FakeConsumer.made) == 1:
            raise KafkaConnectionError("the broker went away")
        await asyncio.sleep(timeout_ms / 1000)
        return {}

    async def topics(self) -> set[str]:
        return set()

    def assignment(self) -> set[Any]:
        return set()

    async def stop(self) -> None:
        raise asyncio.CancelledError()


class FakeProducer:
    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        raise asyncio.CancelledError()


@pytest.fixture
def fake_kafka(monkeypatch: pytest.MonkeyPatch) -> type[FakeConsumer]:
    FakeConsumer.made = []
    monkeypatch.setattr(consumer_module.kafka, "consumer", lambda *a, **k: FakeConsumer())
    monkeypatch.setattr(consumer_module.kafka, "producer", lambda *a, **k: FakeProducer())

    async def no_topics(*_: Any) -> None:
        return None

    monkeypatch.setattr(consumer_module.kafka, "ensure_topics", no_topics)
    return FakeConsumer


async def test_a_cancellation_raised_inside_the_client_does_not_end_the_runner(
    fake_kafka: type[FakeConsumer], tmp_path
):
    settings = make_settings(
        "scheduling", f"sqlite:///{tmp_path}/x.db", kafka_bootstrap_servers="fake:9092"
    )
    runner = ConsumerRunner(settings, None, {"t": lambda s, e: None}, name="g")  # type: ignore[arg-type]
    task = asyncio.create_task(runner.run())
    try:
        await eventually(
            lambda: len(fake_kafka.made) >= 2 and runner.status.state == "consuming",
            what="a fresh consumer after the failure",
        )
        assert not task.done()
        assert "the broker went away" in (runner.status.last_error or "")
        assert fake_kafka.made[-1].polls > 0
    finally:
        runner.stop()
        await asyncio.wait_for(task, 10)
    assert runner.status.state == "stopped"


async def test_cancelling_the_runner_itself_still_stops_it(
    fake_kafka: type[FakeConsumer], tmp_path
):
    settings = make_settings(
        "scheduling", f"sqlite:///{tmp_path}/x.db", kafka_bootstrap_servers="fake:9092"
    )
    runner = ConsumerRunner(settings, None, {"t": lambda s, e: None}, name="g")  # type: ignore[arg-type]
    task = asyncio.create_task(runner.run())
    await eventually(lambda: runner.status.state == "consuming", what="consuming")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 10)


@pytest.fixture
def broker() -> Broker:
    with Broker() as started:
        yield started


async def _healthz(service: kafka_support.Running) -> httpx.Response:
    transport = httpx.ASGITransport(app=service.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        return await client.get("/healthz")


async def test_a_consumer_that_cannot_consume_while_the_broker_answers_fails_liveness(
    broker: Broker,
    topic_prefix: str,
    new_database: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
):
    async def stuck(self: ConsumerRunner, *_: Any) -> None:
        await asyncio.Event().wait()  # e.g. a client call that never returns

    monkeypatch.setattr(ConsumerRunner, "_loop", stuck)
    async with running(
        "scheduling",
        new_database("sched"),
        kafka_bootstrap_servers=broker.bootstrap,
        topic_prefix=topic_prefix,
        consumer_stall_s=1,
        kafka_request_timeout_ms=2000,
    ) as sched:
        assert (await _healthz(sched)).status_code == 200
        response = await eventually(
            lambda: _stalled(sched), timeout=30, what="liveness failing on a stalled consumer"
        )
        body = response.json()
        assert body["status"] == "stalled" and "broker answers" in body["reason"]
        assert sched.events.status()["consumer"]["stalled"] == body["reason"]
        # With the broker down, a restart would not help: liveness holds.
        broker.kill()
        await eventually(
            lambda: _alive(sched), timeout=30, what="liveness back with the broker down"
        )


async def _stalled(service: kafka_support.Running) -> httpx.Response | None:
    response = await _healthz(service)
    return response if response.status_code == 503 else None


async def _alive(service: kafka_support.Running) -> bool:
    return (await _healthz(service)).status_code == 200


def test_status_errors_name_no_host_or_port():
    database = OperationalError(
        "SELECT 1",
        {},
        Exception('connection to server at "10.0.0.7", port 5432 failed: Connection refused'),
    )
    assert "10.0.0.7" not in describe(database) and "5432" not in describe(database)
    kafka = KafkaConnectionError("Unable to bootstrap from [('10.0.0.9', 9092, <AF_INET: 2>)]")
    assert "10.0.0.9" not in describe(kafka) and "9092" not in describe(kafka)
    assert describe(kafka).startswith("KafkaConnectionError")
