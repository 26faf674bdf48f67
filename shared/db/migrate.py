"""Alembic migrations of the resource store, run at start or by the `migrate` command."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text

from shared.db.engine import Database

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    """An alembic Config pointing at our migrations and the given database."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(database: Database, revision: str = "head") -> None:
    """Bring the database schema up to `revision`."""
    config = alembic_config(database.url)
    with database.write_engine.begin() as connection:
        if not database.is_sqlite:
            # Two replicas' init containers may migrate at once: the second waits, then no-ops.
            connection.execute(text("SELECT pg_advisory_xact_lock(727274)"))
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
