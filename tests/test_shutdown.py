"""Real service processes: a search stops when its client leaves, and SIGTERM never hangs."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest

from tests.auth_support import process_auth, staff_headers
from tests.conftest import BACKENDS
from tests.costly import costly_params, seed_sync
from tooling.service_process import ServiceProcess

pytestmark = BACKENDS

# Enough for the costly search to run well over ten seconds on either database.
PATIENTS = 100
CLAUSES = {"sqlite": 50, "postgres": 20}
STOPPED = "statement stopped (the client went away)"


def _backend(database_url: str) -> str:
    return "sqlite" if database_url.startswith("sqlite") else "postgres"


def _service(database_url: str, **settings: str) -> ServiceProcess:
    return ServiceProcess(
        "intake",
        database_url=database_url,
        log_level="info",
        resync_on_start="false",
        # Far beyond the test: only a cancellation can stop the search early.
        statement_timeout_ms="600000",
        env={"KAFKA_BOOTSTRAP_SERVERS": ""},
        **{**process_auth(), **settings},
    )


def _active_queries(database_url: str) -> int:
    """Statements running on the service's PostgreSQL database right now."""
    parts = urlsplit(database_url)
    dsn = f"postgresql://{parts.username}@{parts.hostname}:{parts.port}/postgres"
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND state = 'active'",
            (parts.path.lstrip("/"),),
        ).fetchone()
    return int(row[0]) if row else 0


def _wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    """Poll `predicate` until it holds or `timeout` s pass; its last answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


def test_a_client_that_leaves_stops_its_search(database_url: str):
    backend = _backend(database_url)
    with _service(database_url) as service:
        base = f"{service.url}/fhir"
        with httpx.Client(base_url=base, timeout=60, headers=staff_headers()) as client:
            seed_sync(client, PATIENTS)
        with pytest.raises(httpx.ReadTimeout):
            httpx.get(
                f"{base}/Patient",
                params=costly_params(CLAUSES[backend]),
                timeout=3,
                headers=staff_headers(),
            )
        # The search would run for many seconds more; the cancellation ends it at once.
        assert _wait_for(lambda: STOPPED in service.log_tail(200), 8), service.log_tail()
        if backend == "postgres":
            assert _wait_for(lambda: _active_queries(database_url) == 0, 5)
        assert (
            httpx.get(
                f"{base}/Patient", params={"_count": "1"}, headers=staff_headers()
            ).status_code
            == 200
        )


def test_sigterm_stops_a_service_within_its_grace_period(database_url: str):
    backend = _backend(database_url)
    grace = 4.0
    service = _service(database_url, shutdown_grace_s=str(grace)).start()
    try:
        base = f"{service.url}/fhir"
        with httpx.Client(base_url=base, timeout=60, headers=staff_headers()) as client:
            seed_sync(client, PATIENTS)
        answers: list[object] = []

        def costly() -> None:
            try:
                params = costly_params(CLAUSES[backend])
                answers.append(
                    httpx.get(
                        f"{base}/Patient", params=params, timeout=120, headers=staff_headers()
                    )
                )
            except httpx.HTTPError as exc:
                answers.append(exc)

        clients = [threading.Thread(target=costly) for _ in range(4)]
        for thread in clients:
            thread.start()
        if backend == "postgres":
            assert _wait_for(lambda: _active_queries(database_url) >= 4, 10)
        else:
            time.sleep(1.5)  # the searches have started (no way to see SQLite's in flight)
        assert service.process is not None
        service.process.send_signal(signal.SIGTERM)
        # A correctness bound, not a speed target: the searches alone would take far longer.
        try:
            service.process.wait(timeout=grace + 8)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running after SIGTERM:\n{service.log_tail()}")
        for thread in clients:
            thread.join(timeout=30)
        assert len(answers) == 4  # every client got an answer or a closed connection
        if backend == "postgres":
            assert _wait_for(lambda: _active_queries(database_url) == 0, 5)
    finally:
        service.stop()
