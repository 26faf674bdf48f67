"""The hold sweeper: lapsed holds are cancelled in the background, their slots offered by
`$find` again; sweeps running at once (pods) cancel each hold once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

import httpx

from services.scheduling.finding.sweep import LAPSED
from services.scheduling.finding.sweeper import run_hold_sweeper, sweep_round
from tests.conftest import BACKENDS
from tests.finding_support import (
    calendar,
    call,
    ended,
    find,
    free_slot,
    given,
    given_dose,
    proposals,
    slots_of,
)
from tests.outbox_rows import events_of

DR = "Practitioner/dr-emdr"


def _app(client: httpx.AsyncClient):
    return client._transport.app  # type: ignore[attr-defined]


async def _held_and_lapsed(scheduling: httpx.AsyncClient) -> tuple[dict, str]:
    """p1 holds dr-emdr's one slot (SCHEDULING_HOLD_MINUTES=0: the hold lapses at once)."""
    end = ended()
    await given_dose(scheduling, "p1", end)
    await given_dose(scheduling, "p2", end)
    schedule_id = await calendar(scheduling, DR, "emdr")
    slot_id = await free_slot(scheduling, schedule_id, end + timedelta(hours=30))
    (mine,) = await proposals(scheduling, find("Patient/p1"))
    held = await call(scheduling, "hold", given(mine))
    assert held.status_code == 201, held.text
    return held.json(), slot_id


@BACKENDS
async def test_a_sweep_gives_a_lapsed_hold_s_slot_back_to_find(
    service_client: Callable[..., httpx.AsyncClient],
):
    async with service_client("scheduling", hold_minutes=0) as scheduling:
        hold, slot_id = await _held_and_lapsed(scheduling)
        # Before a sweep the lapsed hold's slot is still busy: $find writes nothing.
        assert await proposals(scheduling, find("Patient/p2")) == []
        before = len(events_of(scheduling, "Appointment"))
        assert await asyncio.to_thread(sweep_round, _app(scheduling)) == 1
        swept = (await scheduling.get(f"/Appointment/{hold['id']}")).json()
        assert swept["status"] == "cancelled"
        assert swept["cancelationReason"] == {"text": LAPSED}
        assert [e["subject"] for e in events_of(scheduling, "Appointment")[before:]] == [
            f"Appointment/{hold['id']}"
        ]
        assert (await scheduling.get(f"/Slot/{slot_id}")).json()["status"] == "free"
        (theirs,) = await proposals(scheduling, find("Patient/p2"))
        assert slots_of(theirs) == [f"Slot/{slot_id}"]
        # Nothing more to sweep.
        assert await asyncio.to_thread(sweep_round, _app(scheduling)) == 0
        # The swept hold can still be booked while its slot is free: no cancelationReason.
        booked = await call(scheduling, "book", given(swept))
        assert booked.status_code == 200, booked.text
        assert booked.json()["status"] == "booked"
        assert "cancelationReason" not in booked.json()


@BACKENDS
async def test_sweeps_at_once_cancel_a_hold_once(
    service_client: Callable[..., httpx.AsyncClient],
):
    async with service_client("scheduling", hold_minutes=0) as scheduling:
        hold, _ = await _held_and_lapsed(scheduling)
        before = len(events_of(scheduling, "Appointment"))
        app = _app(scheduling)
        counts = await asyncio.gather(*(asyncio.to_thread(sweep_round, app) for _ in range(3)))
        assert sum(counts) == 1
        swept = (await scheduling.get(f"/Appointment/{hold['id']}")).json()
        assert (swept["status"], swept["meta"]["versionId"]) == ("cancelled", "2")
        assert len(events_of(scheduling, "Appointment")[before:]) == 1


async def test_the_sweeper_runs_in_the_lifespan_unless_its_interval_is_0(
    service_client: Callable[..., httpx.AsyncClient],
):
    async with service_client("scheduling", hold_minutes=0) as scheduling:
        hold, _ = await _held_and_lapsed(scheduling)
        app = _app(scheduling)
        inner = app.router.lifespan_context
        run_hold_sweeper(app, 0)
        assert app.router.lifespan_context is inner
        run_hold_sweeper(app, 0.05)
        async with app.router.lifespan_context(app):
            for _ in range(100):
                current = (await scheduling.get(f"/Appointment/{hold['id']}")).json()
                if current["status"] == "cancelled":
                    break
                await asyncio.sleep(0.05)
        assert current["status"] == "cancelled"
