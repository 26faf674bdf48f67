"""Load the synthetic programme (bench/outcomes_data.py) into an outcomes database in bulk:
resources, versions, search index and timeline rows, checked first against the store's writes."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from itertools import chain, islice
from typing import Any

from bench.bulk_check import check_bulk_matches_store
from bench.load import BATCH, Progress, analyse, bulk_write
from bench.outcomes_data import programme
from services.outcomes.app import registry
from shared.db.engine import Database
from shared.db.migrate import upgrade

# The first patient's resources (every type the programme has) are the checked sample.
SAMPLE = 120


@dataclass
class Loaded:
    """What a load stored, and how long it took."""

    seconds: float = 0.0
    check_seconds: float = 0.0
    checked_rows: int = 0
    resources: Counter[str] = field(default_factory=Counter)


def load_programme(
    url: str, label: str, *, patients: int, observations: int, seed: int = 11
) -> Loaded:
    """Migrate the database and store the programme; raises RuntimeError when the bulk path
    no longer writes what the store writes."""
    database = Database(url)
    loaded = Loaded()
    try:
        upgrade(database)
        services = registry()
        entries = iter(programme(patients, observations, seed=seed))
        sample = list(islice(entries, SAMPLE))
        started = time.monotonic()
        loaded.checked_rows = check_bulk_matches_store(database, services, sample)
        loaded.check_seconds = time.monotonic() - started
        progress = Progress(label, observations, "score Observations")
        pending: dict[str, list[tuple[str, dict[str, Any]]]] = defaultdict(list)

        def flush(res_type: str) -> None:
            with database.write() as session:
                bulk_write(session, services, res_type, pending[res_type])
            loaded.resources[res_type] += len(pending[res_type])
            pending[res_type] = []
            if res_type == "Observation":
                progress.update(loaded.resources[res_type])

        for res_type, res_id, resource in chain(sample, entries):
            pending[res_type].append((res_id, resource))
            if len(pending[res_type]) >= BATCH:
                flush(res_type)
        for res_type in [t for t, batch in pending.items() if batch]:
            flush(res_type)
        analyse(database)
        loaded.seconds = time.monotonic() - started
        return loaded
    finally:
        database.dispose()
