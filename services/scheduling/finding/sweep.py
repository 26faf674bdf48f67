"""Lapsed holds: a `$hold` past its expiry holds no time. `$hold` and `$book` cancel the
lapsed holds of the participants they book before booking, and the hold sweeper (sweeper.py)
cancels every lapsed hold each interval: either gives the held slots back (each cancellation
an Appointment event, each freed slot a Slot event).

Several sweeps may run at once (pods of the service, a `$book` meanwhile): each hold is locked
and read again before it is cancelled, and cancelled only if it is still a lapsed hold, so one
of them cancels it and the others pass it over."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from services.scheduling.finding.busy import hold_lapsed

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from shared.fhir.interactions import Interactions

LAPSED = "The hold lapsed before the appointment was booked"


def lapsed_cancelled(appointment: dict[str, Any]) -> dict[str, Any]:
    """The hold as cancelled (the hold-expires extension kept, as the record of why)."""
    return {**appointment, "status": "cancelled", "cancelationReason": {"text": LAPSED}}


def _cancel(interactions: Interactions, session: Session, res_id: str, now: datetime) -> bool:
    """Cancel one lapsed hold, locked and read again: two sweeps must not both cancel it (nor
    race a `$book`); whether this one did."""
    base = interactions.settings.canonical_base
    stored = interactions.store.read(session, "Appointment", res_id, lock=True)
    current = stored.resource or {}
    if not hold_lapsed(current, base, now):
        return False
    version = int(current["meta"]["versionId"])
    body = lapsed_cancelled(current)
    interactions.update(session, "Appointment", current["id"], body, if_match=version)
    return True


def lapsed_holds(
    interactions: Interactions, session: Session, now: datetime, limit: int
) -> list[str]:
    """The ids of up to `limit` lapsed holds, of anyone (pending Appointments whose
    hold-expires has passed)."""
    base = interactions.settings.canonical_base
    page = interactions.settings.max_page_size
    found: list[str] = []
    seen = 0
    while len(found) < limit:
        pairs = [
            ("status", "pending"),
            ("_count", str(page)),
            ("_offset", str(seen)),
            ("_total", "none"),
        ]
        result = interactions.search(session, "Appointment", pairs, strict=True)
        seen += len(result.resources)
        found += [a["id"] for a in result.resources if hold_lapsed(a, base, now)]
        if not result.query.more:
            break
    return found[:limit]


def sweep_all(interactions: Interactions, session: Session, now: datetime, limit: int) -> int:
    """Cancel up to `limit` lapsed holds of anyone; how many this sweep cancelled."""
    return sum(
        _cancel(interactions, session, res_id, now)
        for res_id in lapsed_holds(interactions, session, now, limit)
    )


def sweep(
    interactions: Interactions,
    session: Session,
    actors: list[str],
    now: datetime,
    keep: str | None = None,
) -> int:
    """Cancel the lapsed holds naming any of `actors` (but `keep`, being booked); how many
    were cancelled."""
    if not actors:
        return 0
    base = interactions.settings.canonical_base
    pairs = [("actor", ",".join(actors)), ("status", "pending"), ("_count", "1000")]
    found = interactions.search(session, "Appointment", pairs, strict=True).resources
    cancelled = 0
    for candidate in found:
        if candidate["id"] == keep or not hold_lapsed(candidate, base, now):
            continue
        cancelled += _cancel(interactions, session, candidate["id"], now)
    return cancelled
