"""The hold sweeper: a background task of the scheduling service that cancels the lapsed
holds of anyone every `SCHEDULING_HOLD_SWEEP_INTERVAL_S` seconds (0: never), which gives
their slots back to `$find`.

`$find` writes nothing, so it does not cancel a lapsed hold itself: a slot whose only holder
is a lapsed hold is offered again within one sweep interval. (`$hold` and `$book` still cancel
the lapsed holds of the participants they book at once.) Every pod runs a sweeper; on
PostgreSQL they may sweep at once, which the lock-and-reread of sweep.py makes safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from services.scheduling.finding.sweep import sweep_all
from shared.fhir.dates import utcnow

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger(__name__)

# Holds cancelled per transaction; a round goes on while batches come back full.
BATCH = 100


def sweep_round(app: FastAPI) -> int:
    """One round: cancel every lapsed hold, a batch per transaction; how many were cancelled."""
    context = app.state.fhir
    total = 0
    while True:
        with context.database.write() as session:
            cancelled = sweep_all(context.interactions, session, utcnow(), BATCH)
        total += cancelled
        if cancelled < BATCH:
            return total


async def _run(app: FastAPI, interval: float, stopping: asyncio.Event) -> None:
    while not stopping.is_set():
        try:
            cancelled = await asyncio.to_thread(sweep_round, app)
            if cancelled:
                log.info("hold sweeper cancelled %d lapsed hold(s)", cancelled)
        except Exception as exc:  # the next round tries again
            log.warning("hold sweep failed: %s", type(exc).__name__)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), timeout=interval)


def run_hold_sweeper(app: FastAPI, interval: float) -> None:
    """Run the sweeper inside the app's lifespan (after its start-up: migrations), stopped
    before the database is closed; nothing when `interval` is 0."""
    if interval <= 0:
        return
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with inner(app):
            stopping = asyncio.Event()
            task = asyncio.create_task(_run(app, interval, stopping), name="hold-sweeper")
            try:
                yield
            finally:
                stopping.set()
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    app.router.lifespan_context = lifespan
