"""Issue 12: logs are one JSON object per line, with the service, the trace id, the route
template and the outcome; never a path with ids, a query or a body."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import httpx

from shared.events.outbox import current_traceparent
from shared.observability.logs import JsonFormatter
from tests.factories import patient
from tooling.service_process import ServiceProcess

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"


def test_a_record_is_one_json_object_with_the_trace_it_belongs_to():
    record = logging.LogRecord("kemdr.test", logging.WARNING, __file__, 1, "hello %s", ("x",), None)
    token = current_traceparent.set(f"00-{TRACE_ID}-b7ad6b7169203331-01")
    try:
        line = JsonFormatter("intake").format(record)
    finally:
        current_traceparent.reset(token)
    entry = json.loads(line)
    assert entry["message"] == "hello x"
    assert (entry["level"], entry["service"], entry["trace_id"]) == ("warning", "intake", TRACE_ID)
    assert "\n" not in line


def test_an_exception_is_logged_by_type_without_its_message():
    try:
        raise ValueError("Zyxwarbleton was here")
    except ValueError:
        import sys

        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    entry = json.loads(JsonFormatter("intake").format(record))
    assert entry["exception"] == "ValueError"
    assert "Zyxwarbleton" not in json.dumps(entry)


def test_a_running_service_logs_json_lines_by_route_template(tmp_path: Path):
    service = ServiceProcess(
        "intake",
        database_url=f"sqlite:///{tmp_path / 'intake.db'}",
        auth_disabled="true",
        log_level="info",
    )
    service.start(timeout=180)
    try:
        headers = {"traceparent": f"00-{TRACE_ID}-b7ad6b7169203331-01"}
        created = httpx.post(f"{service.url}/fhir/Patient", json=patient("Zyxwarbleton"))
        patient_id = created.json()["id"]
        httpx.get(f"{service.url}/fhir/Patient/{patient_id}", headers=headers)
        httpx.get(f"{service.url}/fhir/Patient", params={"name": "Zyxwarbleton"})
        output = service.log_tail(100_000)
    finally:
        service.stop()
    lines = [line for line in output.splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    access = [e for e in entries if e.get("logger") == "kemdr.access"]
    read = next(e for e in access if e["route"] == "/fhir/Patient/{id}")
    assert (read["method"], read["status"], read["outcome"]) == ("GET", 200, "success")
    assert read["trace_id"] == TRACE_ID and read["service"] == "intake"
    text = "\n".join(lines)
    assert patient_id not in text and "Zyxwarbleton" not in text
