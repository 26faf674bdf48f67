"""Replicas heal themselves: gaps in an owner's sequence and periodic reconciliation."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from starlette.concurrency import run_in_threadpool

from shared.events.describe import describe
from shared.events.gaps import Gap, SequenceTracker
from shared.fhir.dates import DateFormatError, date_range, format_instant, utcnow
from shared.fhir.store import ResourceStore
from shared.settings import ServiceSettings

log = logging.getLogger(__name__)

# Resync one type from its owner, from `since` on (None: everything); returns versions applied.
Resync = Callable[[str, datetime | None], Awaitable[int]]


@dataclass(frozen=True)
class Tally:
    """How many current resources of a type there are, and the newest lastUpdated."""

    count: int
    newest: datetime | None


@dataclass
class HealingStatus:
    gap_repairs: int = 0
    reconciliations: int = 0
    reconcile_repairs: int = 0
    start_resyncs: int = 0
    last_repair: dict[str, Any] | None = None
    last_reconciled: datetime | None = None
    last_error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "gapRepairs": self.gap_repairs,
            "reconciliations": self.reconciliations,
            "reconcileRepairs": self.reconcile_repairs,
            "startResyncs": self.start_resyncs,
            "lastRepair": self.last_repair,
            "lastReconciled": format_instant(self.last_reconciled)
            if self.last_reconciled
            else None,
            "lastError": self.last_error,
        }


def local_tally(store: ResourceStore, res_type: str, until: datetime) -> Tally:
    """The replica's tally of a type, over resources last changed at or before `until`."""
    with store.database.read() as session:
        return Tally(*store.tally(session, res_type, until))


async def owner_tally(
    client: httpx.AsyncClient, owner_base: str, res_type: str, until: datetime
) -> Tally:
    """The owner's tally of a type, by two searches (`_summary=count`, newest first)."""
    url = f"{owner_base}/{res_type}"
    bound = f"le{format_instant(until)}"
    counted = await client.get(url, params={"_lastUpdated": bound, "_summary": "count"})
    counted.raise_for_status()
    newest_page = await client.get(
        url, params={"_lastUpdated": bound, "_sort": "-_lastUpdated", "_count": "1"}
    )
    newest_page.raise_for_status()
    entries = newest_page.json().get("entry") or []
    newest = None
    if entries:
        try:
            newest = date_range(entries[0]["resource"]["meta"]["lastUpdated"])[0]
        except (KeyError, TypeError, DateFormatError):
            newest = None
    return Tally(int(counted.json().get("total", 0)), newest)


class ReplicaHealer:
    """Closes gaps the sequence numbers show, and compares tallies with the owners."""

    def __init__(
        self,
        settings: ServiceSettings,
        store: ResourceStore,
        topics: dict[str, str],
        resync: Resync,
        owner_base: Callable[[str], str],
        http_client: Callable[[], httpx.AsyncClient],
    ) -> None:
        self.settings = settings
        self.store = store
        self.database = store.database
        # topic -> replicated resource type
        self.topics = topics
        self.resync = resync
        self.owner_base = owner_base
        self.http_client = http_client
        self.tracker = SequenceTracker()
        self.status = HealingStatus()

    def _repaired(self, kind: str, res_type: str, versions: int, detail: str) -> None:
        self.status.last_repair = {
            "kind": kind,
            "type": res_type,
            "at": format_instant(utcnow()),
            "versionsApplied": versions,
            "detail": detail,
        }
        log.warning(
            "replica %s repaired (%s): %s; %d versions applied", res_type, kind, detail, versions
        )

    # ---- gaps --------------------------------------------------------------------------
    async def close_overdue_gaps(self) -> int:
        """Catch up every topic with a gap that outlived the gap time-out (once per topic,
        whichever partitions it is on); returns gaps closed."""
        overdue = await run_in_threadpool(
            self.tracker.overdue, self.database, timedelta(seconds=self.settings.gap_timeout_s)
        )
        by_topic: dict[str, list[Gap]] = {}
        for gap in overdue:
            if gap.topic in self.topics and await run_in_threadpool(
                self.tracker.claim, self.database, gap
            ):
                by_topic.setdefault(gap.topic, []).append(gap)
        for topic, gaps in by_topic.items():
            await self._close(gaps, self.topics[topic])
        return sum(len(gaps) for gaps in by_topic.values())

    async def _close(self, gaps: list[Gap], res_type: str) -> None:
        started = utcnow()
        versions = await self.resync(res_type, min(gap.contiguous_time for gap in gaps))
        for gap in gaps:
            await run_in_threadpool(self.tracker.closed, self.database, gap, started)
        self.status.gap_repairs += 1
        self._repaired(
            "gap",
            res_type,
            versions,
            "; ".join(
                f"partition {gap.partition}: events after sequence {gap.contiguous} "
                f"up to {gap.highest} were missing"
                for gap in gaps
            ),
        )

    # ---- reconciliation ----------------------------------------------------------------
    async def reconcile(self, res_type: str) -> bool:
        """Compare tallies with the owner and resync on a lasting difference; True if repaired.

        Events still in flight make tallies differ for a moment, so only resources older than
        the gap time-out are compared, and a difference must still hold after that long.
        """
        settle = timedelta(seconds=self.settings.gap_timeout_s)
        until = utcnow() - settle
        base = self.owner_base(res_type)
        async with self.http_client() as client:
            theirs = await owner_tally(client, base, res_type, until)
            ours = await run_in_threadpool(local_tally, self.store, res_type, until)
            if ours == theirs:
                return False
            await asyncio.sleep(settle.total_seconds())
            theirs = await owner_tally(client, base, res_type, until)
            ours = await run_in_threadpool(local_tally, self.store, res_type, until)
            if ours == theirs:
                return False
        # A different count can hide anywhere in time: fetch the whole history. Equal counts
        # with a different newest change mean something recent is missing.
        since = None if ours.count != theirs.count else ours.newest
        versions = await self.resync(res_type, since)
        self.status.reconcile_repairs += 1
        self._repaired(
            "reconciliation",
            res_type,
            versions,
            f"owner had {theirs.count} (newest {theirs.newest}), replica {ours.count} "
            f"(newest {ours.newest})",
        )
        return True

    async def reconcile_all(self) -> int:
        """One reconciliation round over every replicated type; returns types repaired."""
        repaired = 0
        for res_type in self.topics.values():
            try:
                repaired += await self.reconcile(res_type)
            except Exception as exc:  # an owner away now is compared next round
                self.status.last_error = f"{res_type}: {describe(exc)}"
                log.warning("reconciliation of %s skipped: %s", res_type, exc)
        self.status.reconciliations += 1
        self.status.last_reconciled = utcnow()
        return repaired

    # ---- the loop ----------------------------------------------------------------------
    async def run(self, stopping: asyncio.Event) -> None:
        """Check gaps every second and reconcile on schedule until `stopping` is set."""
        interval = self.settings.reconcile_interval_s
        next_reconcile = asyncio.get_running_loop().time() + interval
        while not stopping.is_set():
            try:
                await self.close_overdue_gaps()
                if interval and asyncio.get_running_loop().time() >= next_reconcile:
                    await self.reconcile_all()
                    next_reconcile = asyncio.get_running_loop().time() + interval
            except Exception as exc:  # the database or an owner away: try again later
                self.status.last_error = describe(exc)
                log.warning("replica healing failed: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=min(1.0, interval or 1.0))
