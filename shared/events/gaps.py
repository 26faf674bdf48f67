"""Gap detection: which of an owner's events a replica has applied, by sequence number.

Numbers count per topic partition: each partition arrives in order (whichever of the
service's processes owns it), while partitions interleave freely, so a topic-wide count
would open a gap whenever one partition ran ahead of another.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import Session

from shared.db.engine import Database
from shared.db.models import ReplicaProgress
from shared.events.envelope import ResourceEvent
from shared.fhir.dates import DateFormatError, date_range, utcnow

# Ranges kept above the contiguous point; past this a gap is open anyway and a catch-up
# will close it, so older detail can be merged away.
_MAX_RANGES = 64

Ranges = list[list[int]]

_TABLE = ReplicaProgress.__table__
_THIS = (_TABLE.c.topic == bindparam("topic")) & (_TABLE.c.partition == bindparam("partition"))
_PROGRESS = select(_TABLE.c.contiguous, _TABLE.c.seen_above, _TABLE.c.gap_since).where(_THIS)
_PROGRESS_LOCKED = _PROGRESS.with_for_update()
_INSERT = insert(_TABLE)
_ADVANCE = (
    update(_TABLE)
    .where((_TABLE.c.topic == bindparam("b_topic")) & (_TABLE.c.partition == bindparam("b_part")))
    .values(contiguous=bindparam("b_contiguous"), contiguous_time=bindparam("b_time"))
)


def add_to_ranges(ranges: Ranges, seq: int) -> Ranges:
    """`ranges` (sorted, disjoint [first, last] pairs) with `seq` added and neighbours merged."""
    merged: Ranges = []
    placed = False
    for first, last in ranges:
        if first <= seq <= last:
            return ranges
        if not placed and seq < first:
            merged.append([seq, seq])
            placed = True
        merged.append([first, last])
    if not placed:
        merged.append([seq, seq])
    out: Ranges = []
    for first, last in merged:
        if out and first <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], last)
        else:
            out.append([first, last])
    if len(out) > _MAX_RANGES:
        out = [*out[: _MAX_RANGES - 1], [out[_MAX_RANGES - 1][0], out[-1][1]]]
    return out


def advance(contiguous: int, ranges: Ranges) -> tuple[int, Ranges]:
    """Move the contiguous point over ranges that now adjoin it; drop those below it."""
    remaining: Ranges = []
    for first, last in ranges:
        if last <= contiguous:
            continue
        if first <= contiguous + 1:
            contiguous = last
        else:
            remaining.append([max(first, contiguous + 1), last])
    return contiguous, remaining


def _event_time(event: ResourceEvent) -> datetime:
    try:
        return date_range(str(event.time))[0]
    except DateFormatError:
        return utcnow()


@dataclass
class Gap:
    """A topic partition whose events above `contiguous` are not all here."""

    topic: str
    partition: int
    contiguous: int
    contiguous_time: datetime
    highest: int
    since: datetime


class SequenceTracker:
    """Records, in the apply transaction, which sequence numbers each topic has delivered."""

    def observe(self, session: Session, topic: str, event: ResourceEvent) -> None:
        """Note an applied event; a number beyond the next one expected on its partition
        opens a gap."""
        seq = event.seq
        if seq is None:
            return
        partition = event.partition or 0
        key = {"topic": topic, "partition": partition}
        connection = session.connection()
        # Core statements, built once: this runs for every event a replica applies. The row
        # lock is the partition's: processes owning other partitions never wait for it.
        query = _PROGRESS if connection.dialect.name == "sqlite" else _PROGRESS_LOCKED
        row = connection.execute(query, key).first()
        if row is None:
            # The first event this replica sees starts its count (a replica built by resync
            # or replay learns the owner's numbering here; reconciliation covers the rest).
            connection.execute(
                _INSERT,
                {
                    **key,
                    "contiguous": seq,
                    "contiguous_time": _event_time(event),
                    "seen_above": "[]",
                },
            )
            return
        if seq <= row.contiguous:
            return  # a redelivery or a re-send
        if seq == row.contiguous + 1 and row.seen_above == "[]":
            # The common case: the next number, no gap open.
            connection.execute(
                _ADVANCE,
                {
                    "b_topic": topic,
                    "b_part": partition,
                    "b_contiguous": seq,
                    "b_time": _event_time(event),
                },
            )
            return
        ranges = add_to_ranges(orjson.loads(row.seen_above), seq)
        contiguous, ranges = advance(row.contiguous, ranges)
        values: dict[str, Any] = {
            "contiguous": contiguous,
            "seen_above": orjson.dumps(ranges).decode(),
        }
        if contiguous != row.contiguous:
            values["contiguous_time"] = _event_time(event)
        if not ranges:
            values["gap_since"] = None
        elif row.gap_since is None:
            values["gap_since"] = utcnow()
        connection.execute(
            update(_TABLE)
            .where(_TABLE.c.topic == topic, _TABLE.c.partition == partition)
            .values(**values)
        )

    def overdue(self, database: Database, older_than: timedelta) -> list[Gap]:
        """Gaps open for longer than `older_than`."""
        cutoff = utcnow() - older_than
        with database.read() as session:
            rows = session.execute(
                select(ReplicaProgress).where(
                    ReplicaProgress.gap_since.is_not(None), ReplicaProgress.gap_since <= cutoff
                )
            ).scalars()
            return [
                Gap(
                    row.topic,
                    row.partition,
                    row.contiguous,
                    row.contiguous_time,
                    max(last for _, last in orjson.loads(row.seen_above)),
                    row.gap_since,
                )
                for row in rows
                if row.gap_since is not None and row.seen_above != "[]"
            ]

    def claim(self, database: Database, gap: Gap) -> bool:
        """Whether this process closes `gap`: the first to restart its clock does, so the
        service's other consumer processes, which see the same row, leave it alone (and take
        it over one time-out later if this one fails to close it)."""
        this = (ReplicaProgress.topic == gap.topic) & (ReplicaProgress.partition == gap.partition)
        with database.write() as session:
            claimed = session.execute(
                update(ReplicaProgress)
                .where(this, ReplicaProgress.gap_since == gap.since)
                .values(gap_since=utcnow())
            )
            return claimed.rowcount == 1

    def open_gaps(self, database: Database) -> dict[str, dict[str, Any]]:
        """Every open gap, for the status endpoint (keyed `<topic>[<partition>]`)."""
        return {
            f"{gap.topic}[{gap.partition}]": {
                "contiguous": gap.contiguous,
                "highestSeen": gap.highest,
                "since": gap.since.isoformat(),
            }
            for gap in self.overdue(database, timedelta(seconds=-1))
        }

    def closed(self, database: Database, gap: Gap, covered_until: datetime) -> None:
        """After a catch-up fetched everything the owner had at `covered_until`: every number
        up to the highest seen when it began is accounted for."""
        this = (ReplicaProgress.topic == gap.topic) & (ReplicaProgress.partition == gap.partition)
        with database.write() as session:
            row = session.execute(
                select(ReplicaProgress).where(this).with_for_update()
            ).scalar_one_or_none()
            if row is None:
                return
            contiguous, ranges = advance(
                max(row.contiguous, gap.highest), orjson.loads(row.seen_above)
            )
            session.execute(
                update(ReplicaProgress)
                .where(this)
                .values(
                    contiguous=contiguous,
                    contiguous_time=max(row.contiguous_time, covered_until),
                    seen_above=orjson.dumps(ranges).decode(),
                    gap_since=utcnow() if ranges else None,
                )
            )
