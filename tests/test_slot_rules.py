"""Slot rules: an end after the start, a stored schedule, and no overlap in one schedule."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from sqlalchemy import column, create_engine, select, table

from shared.db.sqlite_hints import render_index_hints
from tests.conftest import BACKENDS, EXAMPLES
from tests.factories import FHIR_JSON
from tests.scheduling_support import (
    SESSION_TYPES,
    created_id,
    expressions,
    generate,
    post,
    schedule,
    slot,
)
from tests.search_helpers import match_ids, search

NINE, HALF_PAST, TEN = "2026-01-05T08:00:00Z", "2026-01-05T08:30:00Z", "2026-01-05T09:00:00Z"


@BACKENDS
async def test_the_hl7_slot_example_is_taken_once_its_schedule_is_stored(scheduling):
    example = json.loads((EXAMPLES / "slot-example.json").read_text())
    homeless = await post(scheduling, example)
    assert homeless.status_code == 422 and expressions(homeless) == ["Slot.schedule"]
    schedule_example = json.loads((EXAMPLES / "schedule-example.json").read_text())
    stored = await scheduling.put("/Schedule/example", json=schedule_example, headers=FHIR_JSON)
    assert stored.status_code == 201, stored.text
    created = await post(scheduling, example)
    assert created.status_code == 201, created.text
    read = (await scheduling.get(created.headers["location"])).json()
    assert {k: v for k, v in read.items() if k not in ("id", "meta")} == {
        k: v for k, v in example.items() if k not in ("id", "meta")
    }


@pytest.mark.parametrize(("start", "end"), [(HALF_PAST, NINE), (NINE, NINE)])
async def test_a_slot_must_end_after_it_starts(scheduling: httpx.AsyncClient, start, end):
    sid = await created_id(scheduling, schedule())
    refused = await post(scheduling, slot(sid, start, end))
    assert refused.status_code == 422, refused.text
    assert expressions(refused) == ["Slot.end"]


@pytest.mark.parametrize(
    "reference", ["Schedule/unknown", "Practitioner/p1", "http://elsewhere.test/fhir/Schedule/1"]
)
async def test_a_slot_needs_a_stored_schedule(scheduling: httpx.AsyncClient, reference):
    body = slot("x", NINE, HALF_PAST) | {"schedule": {"reference": reference}}
    refused = await post(scheduling, body)
    assert refused.status_code == 422, refused.text
    assert expressions(refused) == ["Slot.schedule"]


async def test_a_deleted_schedule_takes_no_slots(scheduling: httpx.AsyncClient):
    sid = await created_id(scheduling, schedule())
    assert (await scheduling.delete(f"/Schedule/{sid}")).status_code == 204
    refused = await post(scheduling, slot(sid, NINE, HALF_PAST))
    assert refused.status_code == 422 and expressions(refused) == ["Slot.schedule"]


@BACKENDS
async def test_overlapping_slots_in_one_schedule_are_refused(scheduling: httpx.AsyncClient):
    sid, other = await created_id(scheduling, schedule()), await created_id(scheduling, schedule())
    first = await created_id(scheduling, slot(sid, NINE, TEN))
    for start, end in [
        (NINE, TEN),
        (HALF_PAST, "2026-01-05T09:30:00Z"),
        ("2026-01-05T07:00:00Z", "2026-01-05T12:00:00Z"),
    ]:
        refused = await post(scheduling, slot(sid, start, end))
        assert refused.status_code == 409, refused.text
        outcome = refused.json()["issue"][0]
        assert "slot-no-overlap" in outcome["diagnostics"] and first in outcome["diagnostics"]
        assert outcome["code"] == "business-rule"
    # Back to back is no overlap; another schedule is its own calendar.
    await created_id(scheduling, slot(sid, TEN, "2026-01-05T09:30:00Z"))
    await created_id(scheduling, slot(sid, "2026-01-05T07:30:00Z", NINE))
    await created_id(scheduling, slot(other, NINE, TEN))


@BACKENDS
async def test_updates_keep_to_the_rule_and_errors_free_the_time(scheduling: httpx.AsyncClient):
    sid = await created_id(scheduling, schedule())
    first = (await post(scheduling, slot(sid, NINE, HALF_PAST))).json()
    second = (await post(scheduling, slot(sid, HALF_PAST, TEN))).json()
    # A slot may be rewritten over its own time ...
    booked = await scheduling.put(
        f"/Slot/{first['id']}", json=first | {"status": "busy"}, headers=FHIR_JSON
    )
    assert booked.status_code == 200, booked.text
    # ... but not stretched over its neighbour's.
    stretched = second | {"start": NINE}
    refused = await scheduling.put(f"/Slot/{second['id']}", json=stretched, headers=FHIR_JSON)
    assert refused.status_code == 409, refused.text
    # An entered-in-error slot holds no time.
    wrong = first | {"status": "entered-in-error"}
    assert (
        await scheduling.put(f"/Slot/{first['id']}", json=wrong, headers=FHIR_JSON)
    ).status_code == 200
    again = await scheduling.put(f"/Slot/{second['id']}", json=stretched, headers=FHIR_JSON)
    assert again.status_code == 200, again.text


@BACKENDS
async def test_concurrent_overlapping_creates_leave_one_slot(scheduling: httpx.AsyncClient):
    sid = await created_id(scheduling, schedule())
    # Each overlaps every other: all start within the first half hour, all last an hour.
    bodies = [
        slot(sid, f"2026-01-05T08:{minute:02d}:00Z", f"2026-01-05T09:{minute:02d}:00Z")
        for minute in range(0, 30, 2)
    ]
    responses = await asyncio.gather(*(post(scheduling, body) for body in bodies))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * (len(bodies) - 1), [r.text for r in responses]
    bundle = await search(scheduling, "/Slot", {"schedule": f"Schedule/{sid}"})
    assert bundle["total"] == 1


@BACKENDS
async def test_a_days_free_slots_are_found_by_schedule_status_and_start(
    scheduling: httpx.AsyncClient,
):
    """The search `$find` and clients page through; its speed over a year of slots for 60
    schedules is measured by `make bench` (bench/scheduling.py), not here."""
    kind = {"serviceType": [{"coding": [{"system": SESSION_TYPES, "code": "emdr"}]}]}
    sid = await created_id(scheduling, schedule("Practitioner/anna", "emdr"))
    other = await created_id(scheduling, schedule("Practitioner/bram", "dosing"))
    week = generate(start="2026-01-05", end="2026-01-09", slotMinutes=30)
    for schedule_id in (sid, other):
        response = await scheduling.post(f"/Schedule/{schedule_id}/$generate-slots", json=week)
        assert response.status_code == 200, response.text
    busy = await post(
        scheduling, slot(sid, "2026-01-05T16:30:00Z", "2026-01-05T17:00:00Z", status="busy") | kind
    )
    assert busy.status_code == 201, busy.text
    query = [
        ("schedule", f"Schedule/{sid}"),
        ("status", "free"),
        ("start", "ge2026-01-05T00:00:00Z"),
        ("start", "lt2026-01-06T00:00:00Z"),
    ]
    bundle = await search(scheduling, "/Slot", query)
    starts = sorted(e["resource"]["start"] for e in bundle["entry"])
    # Monday 5 January, 09:00 to 17:00 in Amsterdam (UTC+1): 16 half hours from 08:00Z.
    assert bundle["total"] == len(match_ids(bundle)) == 16
    assert starts[0] == "2026-01-05T08:00:00Z" and starts[-1] == "2026-01-05T15:30:00Z"


def test_sqlite_is_sent_the_index_hints_the_search_gives():
    """SQLAlchemy's SQLite compiler drops FROM hints; without them SQLite may scan a whole
    value index per candidate (seconds over a year of slots)."""
    engine = create_engine("sqlite://")
    render_index_hints(engine)
    rows = table("ix_token", column("resource_id"))
    statement = select(rows.c.resource_id).with_hint(
        rows, "INDEXED BY ix_token_resource", dialect_name="sqlite"
    )
    sql = str(statement.compile(engine))
    assert "ix_token INDEXED BY ix_token_resource" in sql


@BACKENDS
async def test_a_transaction_stores_a_schedule_with_its_slots(scheduling: httpx.AsyncClient):
    full_url = "urn:uuid:0c3e2d4a-5b6f-4a7e-9d1c-2b3a4c5d6e7f"

    def entry(resource: dict, url: str | None = None) -> dict:
        return {
            **({"fullUrl": url} if url else {}),
            "resource": resource,
            "request": {"method": "POST", "url": resource["resourceType"]},
        }

    def transaction(*slots: dict) -> dict:
        # The Schedule comes first: creates are written in the order of the entries.
        first = entry(schedule(), full_url)
        return {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [first, *map(entry, slots)],
        }

    one = slot("x", NINE, HALF_PAST) | {"schedule": {"reference": full_url}}
    response = await scheduling.post(
        "", json=transaction(one, one | {"start": HALF_PAST, "end": TEN}), headers=FHIR_JSON
    )
    assert response.status_code == 200, response.text
    refused = await scheduling.post("", json=transaction(one, one), headers=FHIR_JSON)
    assert refused.status_code == 409, refused.text
    assert refused.json()["issue"][0]["expression"] == [
        "Bundle.entry[2].resource.start",
        "Bundle.entry[2].resource.end",
    ]
