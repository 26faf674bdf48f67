"""Review of issue 12 (observability, partitions, repair): each test fails on the code as
reviewed and names what an operations team would hit."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import orjson
from aiokafka import ConsumerRecord
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.exc import IntegrityError

from shared.events.consumer import ConsumerRunner
from shared.events.envelope import ResourceEvent
from shared.observability.logs import JsonFormatter
from shared.ops.dead_letters import DeadLetter, DeadLetters
from tests.conftest import make_settings

NAME = "Zyxwarbleton"
TOPIC = "fhir.Patient"


def _envelope(seq: int) -> bytes:
    return orjson.dumps(
        {
            "specversion": "1.0",
            "id": str(uuid.uuid4()),
            "source": "intake",
            "type": "fhir.Patient.updated",
            "subject": "Patient/p1",
            "versionid": "2",
            "sequence": f"{seq:019d}",
            "data": {"resourceType": "Patient", "id": "p1", "name": [{"family": NAME}]},
        }
    )


def _record(topic: str, partition: int, value: bytes, headers: list[tuple[str, bytes]]) -> Any:
    return ConsumerRecord(
        topic=topic,
        partition=partition,
        offset=7,
        timestamp=0,
        timestamp_type=0,
        key=b"Patient/p1",
        value=value,
        checksum=None,
        serialized_key_size=10,
        serialized_value_size=len(value),
        headers=headers,
    )


class _Producer:
    """Stands in for the dead-letter producer: keeps what was sent."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send_and_wait(self, topic: str, **kwargs: Any) -> None:
        self.sent.append({"topic": topic, **kwargs})


def _runner(tmp_path, handlers: dict[str, Any] | None = None, **overrides: Any) -> ConsumerRunner:
    settings = make_settings(
        "scheduling", f"sqlite:///{tmp_path}/unused.db", consumer_backoff_seconds=0.01, **overrides
    )
    return ConsumerRunner(settings, None, handlers or {TOPIC: lambda s, e: None}, name="scheduling")  # type: ignore[arg-type]


async def test_a_database_error_applying_an_event_keeps_patient_data_out_of_dlq_and_logs(
    tmp_path, caplog
):
    """str() of a SQLAlchemy error quotes the statement's parameters (the resource body): the
    consumer put it raw into the `dlq_error` header (shown by `dlq list`) and the log lines."""
    caplog.set_level(logging.DEBUG)
    runner = _runner(tmp_path, consumer_max_attempts=2)

    def failing(topic: str, event: ResourceEvent) -> bool:
        raise IntegrityError(
            "INSERT INTO resources (body) VALUES (:body)",
            {"body": f'{{"name":[{{"family":"{NAME}"}}]}}'},
            Exception("duplicate key value violates unique constraint"),
        )

    runner.apply = failing  # type: ignore[method-assign]
    dlq = _Producer()
    assert await runner.handle(_record(TOPIC, 0, _envelope(1), []), dlq)  # type: ignore[arg-type]
    assert len(dlq.sent) == 1
    headers = {k: v.decode() for k, v in dlq.sent[0]["headers"]}
    assert NAME not in headers["dlq_error"]
    assert "IntegrityError" in headers["dlq_error"]
    logged = [r.getMessage() for r in caplog.records]
    assert not [line for line in logged if NAME in line], logged
    assert NAME not in (runner.status.last_error or "")


async def test_a_redriven_dead_letter_counts_in_its_own_partitions_sequence(tmp_path):
    """The consumer numbers gaps per partition from the record's partition; a redrive parsed
    the dead letter afresh, so every redriven event counted as partition 0's (a bogus gap on
    partition 0, and its own partition's gap never closed by it)."""
    seen: list[int | None] = []
    runner = _runner(tmp_path)
    runner.apply = lambda topic, event: seen.append(event.partition) or True  # type: ignore[method-assign]
    letters = DeadLetters(runner.settings, runner)
    headers = [
        ("dlq_error", b"RuntimeError: x"),
        ("dlq_source_topic", TOPIC.encode()),
        ("dlq_source_partition", b"3"),
        ("dlq_source_offset", b"41"),
        ("dlq_consumer", b"scheduling"),
    ]
    # A dead-letter topic may have fewer partitions than its source: the letter sits on 0.
    letter = DeadLetter.of(_record(f"{TOPIC}.dlq", 0, _envelope(17), headers))
    outcome, why = await letters._apply(letter)
    assert (outcome, why) == ("redriven", None)
    assert seen == [3]


def test_the_access_line_never_carries_an_unchecked_traceparent():
    """The access line took trace and span ids from the caller's raw header (only the trace
    id's length checked): any text of any length a client sends lands in every log line."""
    from shared.events.outbox import current_traceparent

    junk = f"00-{'a' * 32}-{NAME * 40}-01"
    token = current_traceparent.set(junk)
    try:
        record = logging.makeLogRecord({"msg": "request", "name": "kemdr.access"})
        line = JsonFormatter("intake").format(record)
    finally:
        current_traceparent.reset(token)
    assert NAME not in line


async def test_an_invented_http_method_makes_no_new_metric_series(outcomes):
    """Each method a client invents (any token is a valid HTTP method) became a label value
    of http_requests_total and of every histogram bucket: unbounded series from outside."""
    for n in range(3):
        response = await outcomes.request(f"X{n}{uuid.uuid4().hex[:8].upper()}", "/Patient")
        assert response.status_code in (400, 401, 404, 405, 501)
    text = (await outcomes.get("http://testserver/metrics")).text
    methods = set()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith("http_request"):
                methods.add(sample.labels.get("method"))
    standard = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other", None}
    assert methods <= standard, methods - standard
