"""Issue 12: one trace from an EHR's write at the owner to the replica's apply in another
service, across two real processes and the broker, exported over OTLP/HTTP."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.factories import patient
from tests.kafka_support import kafka_broker, topic_prefix
from tests.otlp_receiver import Receiver
from tooling.broker import Broker
from tooling.service_process import ServiceProcess

__all__ = ["kafka_broker", "topic_prefix"]
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CONSUMER = 5  # SpanKind.SPAN_KIND_CONSUMER in OTLP
SERVER = 2


def _service(name: str, broker: Broker, prefix: str, tmp_path: Path, otlp: str) -> ServiceProcess:
    return ServiceProcess(
        name,
        env={
            "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
            "OTEL_EXPORTER_OTLP_ENDPOINT": otlp,
            "OTEL_BSP_SCHEDULE_DELAY": "200",
        },
        database_url=f"sqlite:///{tmp_path / name}.db",
        topic_prefix=prefix,
        auth_disabled="true",
    )


def test_one_trace_runs_from_the_owners_write_to_the_replicas_apply(
    kafka_broker: Broker, topic_prefix: str, tmp_path: Path
):
    with Receiver() as receiver:
        intake = _service("intake", kafka_broker, topic_prefix, tmp_path, receiver.endpoint)
        outcomes = _service("outcomes", kafka_broker, topic_prefix, tmp_path, receiver.endpoint)
        try:
            intake.start(timeout=180)
            outcomes.start(timeout=180)
            created = httpx.post(
                f"{intake.url}/fhir/Patient",
                json=patient("Tracy"),
                headers={"traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"},
                timeout=30,
            )
            assert created.status_code == 201, created.text
            patient_id = created.json()["id"]
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                spans = receiver.of_trace(TRACE_ID)
                services = {(s.service, s.kind) for s in spans}
                if {("intake", SERVER), ("outcomes", CONSUMER)} <= services:
                    break
                time.sleep(0.3)
            replica = httpx.get(f"{outcomes.url}/fhir/Patient/{patient_id}", timeout=30)
            assert replica.status_code == 200
        finally:
            outcomes.stop()
            intake.stop()
    spans = receiver.of_trace(TRACE_ID)
    server = [s for s in spans if s.service == "intake" and s.kind == SERVER]
    applied = [s for s in spans if s.service == "outcomes" and s.kind == CONSUMER]
    assert server and server[0].name.startswith("POST /fhir/Patient")
    assert applied and applied[0].name == f"apply {topic_prefix}Patient"
    # The database work of each side is in the same trace.
    sql = ("BEGIN", "INSERT", "SELECT", "UPDATE")
    assert {s.service for s in spans if s.name.split(" ")[0] in sql} == {"intake", "outcomes"}
