"""The database URL a service is given: libpq URIs as operators generate them work as they are."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from shared.db.engine import Database
from shared.settings import settings_class

# As CloudNativePG writes key `uri` of its `<cluster>-app` Secret (password percent-encoded).
CNPG_URI = "postgresql://intake:p%40ss%3Aw%2Frd@intake-db-rw.clinical-fhir:5432/intake"


def resolved(url: str) -> str:
    return settings_class("intake", 8001)(database_url=url).resolved_database_url()


@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "POSTGRESQL"])
def test_a_libpq_uri_gets_the_psycopg_3_driver(scheme: str) -> None:
    url = make_url(resolved(CNPG_URI.replace("postgresql", scheme, 1)))
    assert url.drivername == "postgresql+psycopg"
    # Everything but the scheme is kept: the encoded password decodes to the real one.
    assert (url.username, url.password, url.host, url.port, url.database) == (
        "intake",
        "p@ss:w/rd",
        "intake-db-rw.clinical-fhir",
        5432,
        "intake",
    )
    assert url.get_dialect().driver == "psycopg"


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://fhir:pw@postgres:5432/intake",
        "sqlite:///var/intake.db",
        "postgresql://fhir:pw@postgres:5432/intake?sslmode=require",
    ],
)
def test_other_urls_keep_their_driver_and_query(url: str) -> None:
    out = resolved(url)
    assert out.endswith(url.partition("://")[2])
    assert not out.startswith("postgresql://")


def test_no_url_is_the_embedded_sqlite_file() -> None:
    assert resolved("") == "sqlite:///var/intake.db"


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_libpq_uri_connects_to_postgresql(database_url: str) -> None:
    """The URI as CloudNativePG hands it out reaches a real server through psycopg 3."""
    libpq = "postgresql://" + database_url.partition("://")[2]
    database = Database(resolved(libpq))
    try:
        with database.write_engine.connect() as connection:
            assert connection.execute(text("select 1")).scalar() == 1
    finally:
        database.dispose()
