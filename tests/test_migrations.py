"""Alembic migrations: applied by the `migrate` command and at start, safely repeatable."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect

from shared.db.engine import Database
from shared.db.migrate import upgrade
from shared.db.models import metadata
from tooling.postgres import PostgresCluster

ROOT = Path(__file__).resolve().parents[1]


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_migrate_command_creates_the_schema_and_is_repeatable(tmp_path: Path) -> None:
    env = {**os.environ, "INTAKE_DATA_DIR": str(tmp_path)}
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, "-m", "services.intake", "migrate"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
    tables = _tables(f"sqlite:///{tmp_path}/intake.db")
    assert set(metadata.tables) <= tables
    assert "alembic_version" in tables


def test_migrations_match_the_models(pg_cluster: PostgresCluster) -> None:
    """The migration scripts create exactly the tables and columns the models declare."""
    url = pg_cluster.create_database("migration_check")
    database = Database(url)
    upgrade(database)
    inspector = inspect(database.write_engine)
    for name, table in metadata.tables.items():
        columns = {c["name"] for c in inspector.get_columns(name)}
        assert columns == set(table.columns.keys()), name
        indexes = {i["name"] for i in inspector.get_indexes(name)}
        assert {i.name for i in table.indexes} <= indexes, name
    database.dispose()


def test_parallel_migrations_on_postgres_do_not_collide(pg_cluster: PostgresCluster) -> None:
    url = pg_cluster.create_database("parallel_migrate")

    def migrate() -> None:
        database = Database(url)
        try:
            upgrade(database)
        finally:
            database.dispose()

    with ThreadPoolExecutor(max_workers=3) as pool:
        for future in [pool.submit(migrate) for _ in range(3)]:
            future.result(timeout=120)
    assert set(metadata.tables) <= _tables(url)


@pytest.mark.parametrize("service", ["intake", "scheduling", "outcomes"])
def test_app_migrates_at_start(tmp_path: Path, service: str) -> None:
    from fastapi.testclient import TestClient

    from tests.auth_support import auth_settings
    from tests.conftest import SERVICES

    settings_cls, factory = SERVICES[service]
    settings = settings_cls(data_dir=str(tmp_path), **auth_settings())
    with TestClient(factory(settings)) as client:
        assert client.get("/readyz").json() == {"status": "ok", "database": "up"}
    assert "resources" in _tables(f"sqlite:///{tmp_path}/{service}.db")
