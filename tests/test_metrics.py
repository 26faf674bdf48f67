"""Issue 12: Prometheus metrics at /metrics — by route template, never a raw path; summed over
every uvicorn worker; the database's backlog read at scrape time."""

from __future__ import annotations

from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.auth_support import staff_headers
from tests.measures_support import known_patient, score
from tooling.service_process import ServiceProcess

METRICS = "http://testserver/metrics"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition by (name, sorted labels)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(found: dict, name: str, **labels: str) -> float:
    """The sum over the samples of `name` whose labels include `labels`."""
    return sum(
        v for (n, have), v in found.items() if n == name and set(labels.items()) <= set(have)
    )


async def scrape(client: httpx.AsyncClient) -> dict:
    response = await client.get(METRICS)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return samples(response.text)


async def test_requests_are_counted_by_route_template_and_status_never_by_raw_path(outcomes):
    before = await scrape(outcomes)
    for _ in range(3):
        assert (await outcomes.get("/Patient/secret-id-4711")).status_code == 404
    # Refused before routing: still counted under the route it was meant for.
    refused = await outcomes.get("/Patient/secret-id-4711", headers={"Authorization": ""})
    assert refused.status_code == 401
    response = await outcomes.get(METRICS)
    after = samples(response.text)
    template = {"service": "outcomes", "route": "/fhir/Patient/{id}", "method": "GET"}
    counted = "http_requests_total"
    assert (
        value(after, counted, **template, status="404")
        - value(before, counted, **template, status="404")
        == 3
    )
    assert (
        value(after, counted, **template, status="401")
        - value(before, counted, **template, status="401")
        == 1
    )
    assert value(after, "http_request_duration_seconds_count", **template) >= 4
    assert "secret-id-4711" not in response.text


async def test_the_outbox_backlog_and_audit_writes_are_exposed(outcomes):
    # The test app runs no relay: what it writes waits in the outbox.
    before = await scrape(outcomes)
    known_patient(outcomes)
    assert (await outcomes.post("/Observation", json=score("44261-6", 12))).status_code == 201
    after = await scrape(outcomes)
    assert value(after, "kemdr_outbox_backlog", service="outcomes") >= 1
    assert value(after, "kemdr_outbox_oldest_unsent_age_seconds", service="outcomes") >= 0
    audited = "kemdr_audit_events_written_total"
    assert (
        value(after, audited, service="outcomes", path="write")
        - value(before, audited, service="outcomes", path="write")
        == 1
    )


def test_several_workers_answer_one_sum(tmp_path: Path):
    """uvicorn with two workers: whichever answers the scrape reports every worker's requests."""
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_999999.db").write_bytes(b"left by an earlier run")
    service = ServiceProcess(
        "intake",
        env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)},
        database_url=f"sqlite:///{tmp_path / 'intake.db'}",
        workers="2",
        auth_disabled="true",
    )
    # Two workers import the app each: slow on a loaded machine.
    service.start(timeout=180)
    try:
        with httpx.Client(base_url=service.url, headers=staff_headers()) as client:
            for _ in range(40):
                response = client.get("/fhir/metadata", headers={"Connection": "close"})
                assert response.status_code == 200
            for _ in range(6):
                found = samples(client.get("/metrics", headers={"Connection": "close"}).text)
                total = value(
                    found, "http_requests_total", route="/fhir/metadata", method="GET", status="200"
                )
                assert total == 40
    finally:
        service.stop()
    files = {p.name for p in metrics_dir.iterdir()}
    assert "counter_999999.db" not in files  # an earlier run's file was cleared
    assert len([name for name in files if name.startswith("counter_")]) == 2  # one per worker
