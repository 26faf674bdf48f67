"""Fixtures: a real PostgreSQL cluster, migrated template databases, and service clients."""

from __future__ import annotations

import itertools
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from fastapi import FastAPI

from services.intake.app import IntakeSettings
from services.intake.app import create_app as intake_app
from services.outcomes.app import OutcomesSettings
from services.outcomes.app import create_app as outcomes_app
from services.scheduling.app import SchedulingSettings
from services.scheduling.app import create_app as scheduling_app
from shared.db.engine import Database
from shared.db.migrate import upgrade
from shared.settings import ServiceSettings
from tests.auth_support import auth_settings, staff_headers
from tooling.postgres import PostgresCluster

SERVICES: dict[str, tuple[type[ServiceSettings], Callable[[ServiceSettings], FastAPI]]] = {
    "intake": (IntakeSettings, intake_app),
    "scheduling": (SchedulingSettings, scheduling_app),
    "outcomes": (OutcomesSettings, outcomes_app),
}
EXAMPLES = Path(__file__).resolve().parent / "fixtures" / "fhir-examples"
_counter = itertools.count()


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    """The suite's PostgreSQL server; if it cannot start, the tests that need it fail."""
    cluster = PostgresCluster().start()
    template = cluster.create_database("kemdr_template")
    database = Database(template)
    upgrade(database)
    database.dispose()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    database = Database(f"sqlite:///{path}")
    upgrade(database)
    database.dispose()
    return path


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> str:
    """A fresh, migrated database on the backend the test is parametrised with."""
    backend = getattr(request, "param", "sqlite")
    if backend == "postgres":
        cluster: PostgresCluster = request.getfixturevalue("pg_cluster")
        name = f"t{next(_counter)}"
        with psycopg.connect(cluster.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE kemdr_template')
        return cluster.url(name)
    path = tmp_path / "service.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


BACKENDS = pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)


def make_settings(service: str, database_url: str, **overrides: object) -> ServiceSettings:
    settings_cls, _ = SERVICES[service]
    return settings_cls(
        database_url=database_url, migrate_on_start=False, **{**auth_settings(), **overrides}
    )


@pytest.fixture
def service_client(database_url: str) -> Callable[..., AsyncIterator[httpx.AsyncClient]]:
    """Factory: an httpx client bound to one service's ASGI app on the test's database."""
    apps: list[FastAPI] = []

    def build(service: str, **overrides: object) -> httpx.AsyncClient:
        _, factory = SERVICES[service]
        app = factory(make_settings(service, database_url, **overrides))
        apps.append(app)
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://testserver/fhir",
            headers={"Accept": "application/fhir+json", **staff_headers()},
            timeout=60,
        )

    yield build
    for app in apps:
        app.state.fhir.database.dispose()


@pytest.fixture
async def intake(
    service_client: Callable[..., httpx.AsyncClient],
) -> AsyncIterator[httpx.AsyncClient]:
    async with service_client("intake") as client:
        yield client


@pytest.fixture
async def scheduling(
    service_client: Callable[..., httpx.AsyncClient],
) -> AsyncIterator[httpx.AsyncClient]:
    async with service_client("scheduling") as client:
        yield client


@pytest.fixture
async def outcomes(
    service_client: Callable[..., httpx.AsyncClient],
) -> AsyncIterator[httpx.AsyncClient]:
    async with service_client("outcomes") as client:
        yield client
