"""Lapsed holds: a `$hold` past its expiry holds no time. `$hold` and `$book` cancel the
lapsed holds of the participants they book before booking, which gives their slots back."""

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
        # Locked and read again: two sweeps must not both cancel (nor race a $book).
        stored = interactions.store.read(session, "Appointment", candidate["id"], lock=True)
        current = stored.resource or {}
        if not hold_lapsed(current, base, now):
            continue
        version = int(current["meta"]["versionId"])
        body = lapsed_cancelled(current)
        interactions.update(session, "Appointment", current["id"], body, if_match=version)
        cancelled += 1
    return cancelled
