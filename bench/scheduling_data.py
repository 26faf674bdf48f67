"""The data of `bench.scheduling`: a year of half-hour slots for 50 practitioners and 10 rooms,
written in bulk through the store's own index code ($generate-slots is one schedule a call)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.load import BATCH, bulk_create
from services.scheduling.app import registry
from services.scheduling.session_types import session_type_system
from shared.db.engine import Database
from shared.db.migrate import upgrade

BASE = "https://fhir.example.org/kemdr"
PRACTITIONERS, ROOMS = 50, 10
# Working hours in UTC, weekdays: 18 half-hour slots a day, about 4,700 a schedule a year.
DAY_START, DAY_END = 8, 17
DAYS = int(os.environ.get("BENCH_SCHEDULING_DAYS", "365"))


def fhir(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def actors() -> list[str]:
    return [f"Practitioner/dr-{n:02d}" for n in range(PRACTITIONERS)] + [
        f"Location/room-{n:02d}" for n in range(ROOMS)
    ]


def _schedules() -> list[tuple[str, dict[str, Any]]]:
    concept = {"coding": [{"system": session_type_system(BASE), "code": "emdr"}]}
    return [
        (
            f"sched-{n:02d}",
            {
                "resourceType": "Schedule",
                "active": True,
                "serviceType": [concept],
                "actor": [{"reference": actor}],
            },
        )
        for n, actor in enumerate(actors())
    ]


def _slots(first: datetime) -> Iterator[tuple[str, dict[str, Any]]]:
    for day in range(DAYS):
        date = first + timedelta(days=day)
        if date.weekday() >= 5:
            continue
        for half in range((DAY_END - DAY_START) * 2):
            start = date.replace(hour=DAY_START) + timedelta(minutes=30 * half)
            for n in range(PRACTITIONERS + ROOMS):
                yield (
                    f"slot-{n:02d}-{day:03d}-{half:02d}",
                    {
                        "resourceType": "Slot",
                        "schedule": {"reference": f"Schedule/sched-{n:02d}"},
                        "status": "free",
                        "start": fhir(start),
                        "end": fhir(start + timedelta(minutes=30)),
                    },
                )


def load_calendars(url: str) -> int:
    """Migrate and store the schedules and a year of slots from today; how many slots."""
    database = Database(url)
    try:
        upgrade(database)
        resources = registry().resources
        with database.write() as session:
            bulk_create(session, resources["Schedule"], _schedules())
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        count, batch = 0, []
        for item in _slots(today.replace(tzinfo=None)):
            batch.append(item)
            if len(batch) == BATCH:
                with database.write() as session:
                    bulk_create(session, resources["Slot"], batch)
                count, batch = count + len(batch), []
        if batch:
            with database.write() as session:
                bulk_create(session, resources["Slot"], batch)
            count += len(batch)
        return count
    finally:
        database.dispose()
