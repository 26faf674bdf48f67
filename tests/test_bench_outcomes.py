"""The outcomes benchmark's bulk loader writes what the store writes: resources, versions,
search index rows and the timeline's projection rows (no timing asserted here)."""

from __future__ import annotations

from itertools import islice

import pytest
from sqlalchemy import func, select, update

from bench import bulk_check
from bench.bulk_check import check_bulk_matches_store
from bench.load import bulk_create, bulk_write
from bench.outcomes_data import programme
from bench.outcomes_load import load_programme
from services.outcomes.app import registry
from services.outcomes.timeline.tables import CONSENTS, DOSES, ENCOUNTERS, SCORES, SESSIONS
from shared.db.engine import Database

pytestmark = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)

PATIENTS, OBSERVATIONS = 50, 2000


def test_a_tiny_programme_loads_and_every_score_is_on_the_timeline(database_url):
    loaded = load_programme(
        database_url, "test", patients=PATIENTS, observations=OBSERVATIONS, seed=3
    )
    assert loaded.resources["Observation"] == OBSERVATIONS
    assert loaded.resources["Patient"] == PATIENTS
    assert loaded.checked_rows > 0
    database = Database(database_url)
    try:
        with database.read() as session:

            def count(table, *where):  # type: ignore[no-untyped-def]
                query = select(func.count()).select_from(table).where(*where)
                return session.execute(query).scalar_one()

            assert count(SCORES) == OBSERVATIONS
            assert count(DOSES) == loaded.resources["MedicationAdministration"]
            assert count(SESSIONS) == loaded.resources["Appointment"]
            assert count(ENCOUNTERS) == loaded.resources["Encounter"]
            assert count(CONSENTS) == loaded.resources["Consent"]
            # Every patient has a baseline and a later score of the followed instruments.
            patients = select(func.count(func.distinct(SCORES.c.patient_id))).where(
                SCORES.c.measure == "phq9-total"
            )
            assert session.execute(patients).scalar_one() == PATIENTS
    finally:
        database.dispose()


def test_the_bulk_rows_equal_the_stores_rows_for_every_type(database_url):
    sample = list(islice(programme(PATIENTS, OBSERVATIONS, seed=3), 400))
    assert {res_type for res_type, _, _ in sample} == {
        "Patient",
        "Consent",
        "MedicationAdministration",
        "Appointment",
        "Encounter",
        "Observation",
    }
    database = Database(database_url)
    try:
        compared = check_bulk_matches_store(database, registry(), sample)
        assert compared > len(sample)  # index and projection rows besides the resources
    finally:
        database.dispose()


def test_a_bulk_path_that_drops_projection_rows_is_caught(database_url, monkeypatch):
    def without_projections(session, services, res_type, batch):  # type: ignore[no-untyped-def]
        replica = not services.owns(res_type)
        bulk_create(session, services.resources[res_type], batch, replica=replica)

    monkeypatch.setattr(bulk_check, "bulk_write", without_projections)
    sample = list(islice(programme(2, 40, seed=3), 60))
    database = Database(database_url)
    try:
        with pytest.raises(RuntimeError, match=r"update bulk_create for: .*outcome_scores"):
            check_bulk_matches_store(database, registry(), sample)
    finally:
        database.dispose()


def test_a_bulk_path_that_projects_another_value_is_caught(database_url, monkeypatch):
    def off_by_one(session, services, res_type, batch):  # type: ignore[no-untyped-def]
        bulk_write(session, services, res_type, batch)
        session.execute(update(SCORES).values(value=SCORES.c.value + 1))

    monkeypatch.setattr(bulk_check, "bulk_write", off_by_one)
    sample = list(islice(programme(2, 40, seed=3), 60))
    database = Database(database_url)
    try:
        with pytest.raises(RuntimeError, match="outcome_scores rows differ"):
            check_bulk_matches_store(database, registry(), sample)
    finally:
        database.dispose()
