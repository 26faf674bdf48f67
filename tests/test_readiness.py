"""Readiness follows the database: 503 while it is down, 200 again once it is back."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import httpx
import pytest

from shared.db.engine import Database
from shared.db.migrate import upgrade
from tests.auth_support import staff_headers
from tests.conftest import SERVICES, make_settings
from tooling.postgres import PostgresCluster


@pytest.fixture
def own_postgres() -> Iterator[PostgresCluster]:
    """A PostgreSQL server of this test alone, since the test crashes it."""
    cluster = PostgresCluster().start()
    try:
        yield cluster
    finally:
        cluster.stop()


@asynccontextmanager
async def _intake_on(cluster: PostgresCluster) -> AsyncIterator[httpx.AsyncClient]:
    """Intake on a fresh, migrated database of `cluster`, lifespan running, and a client."""
    url = cluster.create_database("intake")
    database = Database(url)
    upgrade(database)
    database.dispose()
    _, factory = SERVICES["intake"]
    app = factory(make_settings("intake", url))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t", headers=staff_headers()
        ) as client,
    ):
        yield client


@pytest.mark.postgres
async def test_readyz_is_503_while_postgresql_is_down_and_recovers_without_a_restart(
    own_postgres: PostgresCluster,
):
    async with _intake_on(own_postgres) as client:
        assert (await client.get("/readyz")).status_code == 200
        own_postgres.crash()
        down = await client.get("/readyz")
        assert down.status_code == 503
        assert down.json()["database"] == "down"
        # The database is a dependency: liveness stays up, so Kubernetes does not restart us.
        assert (await client.get("/healthz")).status_code == 200
        write = await client.post(
            "/fhir/Patient",
            json={"resourceType": "Patient"},
            headers={"Content-Type": "application/fhir+json"},
        )
        assert write.status_code == 503
        assert write.json()["resourceType"] == "OperationOutcome"
        own_postgres.recover()
        assert (await client.get("/readyz")).status_code == 200
        again = await client.post(
            "/fhir/Patient",
            json={"resourceType": "Patient"},
            headers={"Content-Type": "application/fhir+json"},
        )
        assert again.status_code == 201, again.text


@pytest.mark.postgres
async def test_first_write_after_a_restart_while_idle_reconnects(
    own_postgres: PostgresCluster, monkeypatch: pytest.MonkeyPatch
):
    # No pre-ping on every checkout: a connection idle past IDLE_PING_SECONDS is pinged, so
    # a restart nobody noticed (no request while it was down) costs no failed request.
    monkeypatch.setattr("shared.db.engine.IDLE_PING_SECONDS", 0.0)
    patient = {"resourceType": "Patient"}
    headers = {"Content-Type": "application/fhir+json"}
    async with _intake_on(own_postgres) as client:
        first = await client.post("/fhir/Patient", json=patient, headers=headers)
        assert first.status_code == 201, first.text
        own_postgres.crash()
        own_postgres.recover()
        again = await client.post("/fhir/Patient", json=patient, headers=headers)
        assert again.status_code == 201, again.text
