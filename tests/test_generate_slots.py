"""`Schedule/$generate-slots`: a period's slots from wall-clock hours in the clinic's zone."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy import select

from services.scheduling.app import create_app
from services.scheduling.settings import SchedulingSettings
from shared.db.models import OutboxRow
from shared.settings import ServiceSettings
from tests.auth_support import bearer
from tests.conftest import BACKENDS
from tests.outbox_rows import RESOURCE_EVENTS
from tests.scheduling_support import (
    SESSION_TYPES,
    counts,
    created_id,
    expressions,
    generate,
    schedule,
    slot,
)
from tests.search_helpers import search

AMSTERDAM = ZoneInfo("Europe/Amsterdam")
WINTER_WEEK = {"start": "2026-01-05", "end": "2026-01-09"}


async def run(client: httpx.AsyncClient, schedule_id: str, **inputs: Any) -> httpx.Response:
    return await client.post(f"/Schedule/{schedule_id}/$generate-slots", json=generate(**inputs))


async def slots_of(client: httpx.AsyncClient, schedule_id: str) -> list[dict[str, Any]]:
    params = {"schedule": f"Schedule/{schedule_id}", "_sort": "start", "_count": "1000"}
    return [e["resource"] for e in (await search(client, "/Slot", params)).get("entry", [])]


def local(instant: str, zone: ZoneInfo = AMSTERDAM) -> str:
    """A stored instant on the clinic's wall clock, as `YYYY-MM-DD HH:MM`."""
    moment = datetime.fromisoformat(instant.replace("Z", "+00:00"))
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M")


def slot_events(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    database = client._transport.app.state.fhir.database  # type: ignore[attr-defined]
    with database.read() as session:
        rows = session.execute(select(OutboxRow.payload).where(RESOURCE_EVENTS)).scalars()
        events = [json.loads(payload) for payload in rows]
    return [e for e in events if e["subject"].startswith("Slot/")]


@BACKENDS
async def test_a_winter_week_of_working_hours(scheduling: httpx.AsyncClient):
    sid = await created_id(scheduling, schedule("Practitioner/anna", "emdr"))
    done = await run(scheduling, sid, **WINTER_WEEK, slotMinutes=60)
    assert counts(done) == {"created": 40, "skipped": 0, "overlapping": 0}
    slots = await slots_of(scheduling, sid)
    assert len(slots) == 40
    # 09:00 in Amsterdam is 08:00Z in winter; the last hour starts at 16:00 local.
    assert slots[0]["start"] == "2026-01-05T08:00:00Z" and slots[0]["end"] == "2026-01-05T09:00:00Z"
    assert local(slots[-1]["start"]) == "2026-01-09 16:00"
    assert {s["status"] for s in slots} == {"free"}
    assert all(
        s["serviceType"][0]["coding"][0] == {"system": SESSION_TYPES, "code": "emdr"} for s in slots
    )
    # Each is an ordinary resource: its own history and its own event.
    history = await scheduling.get(f"/Slot/{slots[0]['id']}/_history")
    assert history.json()["total"] == 1
    assert len(slot_events(scheduling)) == 40
    # Running it again adds nothing.
    again = await run(scheduling, sid, **WINTER_WEEK, slotMinutes=60)
    assert counts(again) == {"created": 0, "skipped": 40, "overlapping": 0}
    assert len(await slots_of(scheduling, sid)) == 40


@BACKENDS
async def test_nine_oclock_stays_nine_oclock_across_the_clock_change(scheduling):
    sid = await created_id(scheduling, schedule())
    week = {"start": "2026-03-26", "end": "2026-04-01"}
    days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    done = await run(
        scheduling,
        sid,
        **week,
        weekday=days,
        slotMinutes=60,
        dayStart="09:00:00",
        dayEnd="10:00:00",
    )
    assert counts(done)["created"] == 7
    slots = await slots_of(scheduling, sid)
    # Summer time starts on Sunday 29 March 2026: 08:00Z before, 07:00Z from then on.
    assert [s["start"][5:16] for s in slots] == [
        "03-26T08:00",
        "03-27T08:00",
        "03-28T08:00",
        "03-29T07:00",
        "03-30T07:00",
        "03-31T07:00",
        "04-01T07:00",
    ]
    assert {local(s["start"])[11:] for s in slots} == {"09:00"}
    assert {local(s["end"])[11:] for s in slots} == {"10:00"}


async def test_weekdays_status_and_the_clinics_zone(service_client):
    async with service_client("scheduling", clinic_time_zone="America/New_York") as client:
        sid = await created_id(client, schedule())
        done = await run(
            client,
            sid,
            **WINTER_WEEK,
            weekday=["sat", "sun", "mon"],
            slotMinutes=90,
            dayStart="08:30:00",
            dayEnd="12:00:00",
            status="busy-unavailable",
        )
        # Only Monday 5 January falls in the week; 08:30-10:00 and 10:00-11:30 fit.
        assert counts(done)["created"] == 2
        slots = await slots_of(client, sid)
    assert [s["start"] for s in slots] == ["2026-01-05T13:30:00Z", "2026-01-05T15:00:00Z"]
    assert {s["status"] for s in slots} == {"busy-unavailable"}


@BACKENDS
async def test_existing_slots_are_skipped_and_overlaps_left_out(scheduling: httpx.AsyncClient):
    sid = await created_id(scheduling, schedule())
    # Monday 09:00-09:30 local exists; so does a dosing block from 13:15 to 14:15.
    await created_id(scheduling, slot(sid, "2026-01-05T08:00:00Z", "2026-01-05T08:30:00Z"))
    await created_id(scheduling, slot(sid, "2026-01-05T12:15:00Z", "2026-01-05T13:15:00Z"))
    done = await run(scheduling, sid, start="2026-01-05", end="2026-01-05", slotMinutes=30)
    # 16 half hours: one taken at its start, three overlap the block (13:00, 13:30, 14:00).
    assert counts(done) == {"created": 12, "skipped": 1, "overlapping": 3}
    assert len(await slots_of(scheduling, sid)) == 14


@pytest.mark.parametrize(
    ("inputs", "at_fault"),
    [
        ({"start": "2026-01-09", "end": "2026-01-05"}, "end"),
        ({"start": "2026-01-01", "end": "2027-02-05"}, "end"),
        ({"start": "2026-01", "end": "2026-01-05"}, "start"),
        ({"slotMinutes": 0}, "slotMinutes"),
        ({"slotMinutes": 1, "start": "2026-01-01", "end": "2026-12-31"}, "slotMinutes"),
        ({"dayStart": "17:00:00", "dayEnd": "09:00:00"}, "dayEnd"),
        ({"weekday": ["mon", "someday"]}, "weekday"),
        ({"status": "entered-in-error"}, "status"),
    ],
)
async def test_inputs_out_of_bounds_are_refused(scheduling, inputs: dict, at_fault: str):
    sid = await created_id(scheduling, schedule())
    refused = await run(scheduling, sid, **({**WINTER_WEEK, "slotMinutes": 30} | inputs))
    assert refused.status_code == 422, refused.text
    assert expressions(refused) == [at_fault]
    assert await slots_of(scheduling, sid) == []


async def test_an_unknown_or_inactive_schedule_gets_no_slots(scheduling: httpx.AsyncClient):
    missing = await run(scheduling, "nope", **WINTER_WEEK, slotMinutes=30)
    assert missing.status_code == 404, missing.text
    sid = await created_id(scheduling, schedule(active=False))
    inactive = await run(scheduling, sid, **WINTER_WEEK, slotMinutes=30)
    assert inactive.status_code == 422 and expressions(inactive) == ["Schedule.active"]


async def test_it_needs_the_right_to_create_slots(scheduling: httpx.AsyncClient):
    sid = await created_id(scheduling, schedule())
    body = generate(**WINTER_WEEK, slotMinutes=30)
    url = f"/Schedule/{sid}/$generate-slots"
    reader = await scheduling.post(url, json=body, headers=bearer(scope="system/*.rs"))
    assert reader.status_code == 403, reader.text
    writer = await scheduling.post(url, json=body, headers=bearer(scope="system/Slot.cs"))
    assert writer.status_code == 200, writer.text


def test_an_unknown_time_zone_stops_the_start(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SCHEDULING_CLINIC_TIME_ZONE", "Europe/Atlantis")
    with pytest.raises(ValidationError, match="clinic_time_zone"):
        SchedulingSettings()
    monkeypatch.setenv("SCHEDULING_CLINIC_TIME_ZONE", "Europe/Lisbon")
    assert SchedulingSettings().clinic_time_zone == "Europe/Lisbon"


def test_shared_settings_gain_the_clinics_zone(database_url: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SCHEDULING_CLINIC_TIME_ZONE", "Europe/Berlin")
    shared = ServiceSettings(database_url=database_url, migrate_on_start=False, auth_disabled=True)
    app = create_app(shared)
    settings = app.state.fhir.interactions.settings
    app.state.fhir.database.dispose()
    assert isinstance(settings, SchedulingSettings)
    assert (settings.service_name, settings.port) == ("scheduling", 8002)
    assert (settings.database_url, settings.clinic_time_zone) == (database_url, "Europe/Berlin")
