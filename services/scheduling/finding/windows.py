"""The plasticity windows of a patient's completed doses, as stored on each dose."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from services.scheduling.dosing.extensions import read_window
from services.scheduling.schedule_slots import instant

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from shared.fhir.interactions import Interactions

# Enough doses back to find the one in force: a course is a few dozen doses at most.
_DOSES_SEEN = 100


@dataclass(frozen=True)
class DoseWindow:
    """One completed dose (`MedicationAdministration/<id>`), when it ended and its window."""

    dose: str
    ended: datetime
    window_start: datetime
    optimal_start: datetime
    optimal_end: datetime
    window_end: datetime

    def offset_hours(self, start: datetime) -> float:
        """Hours from the end of the dose to `start`, as the server states it."""
        return round((start - self.ended).total_seconds() / 3600, 2)

    def holds(self, start: datetime, end: datetime) -> bool:
        return self.window_start <= start and end <= self.window_end

    # When the administration began (None: only an instant was recorded, the end).
    started: datetime | None = None


def _ended(dose: dict[str, Any]) -> datetime | None:
    period = dose.get("effectivePeriod") or {}
    moment = period.get("end") or dose.get("effectiveDateTime")
    return instant(moment) if isinstance(moment, str) else None


def _started(dose: dict[str, Any]) -> datetime | None:
    moment = (dose.get("effectivePeriod") or {}).get("start")
    return instant(moment) if isinstance(moment, str) else None


def as_window(dose: dict[str, Any], base: str) -> DoseWindow | None:
    """The dose's stored window (None: not completed, or no protocol gave it one)."""
    values = read_window(dose, base)
    ended = _ended(dose)
    if dose.get("status") != "completed" or not values or ended is None:
        return None
    return DoseWindow(
        f"MedicationAdministration/{dose['id']}",
        ended,
        instant(values["windowStart"]),
        instant(values["optimalStart"]),
        instant(values["optimalEnd"]),
        instant(values["windowEnd"]),
        _started(dose),
    )


def dose_windows(interactions: Interactions, session: Session, patient: str) -> list[DoseWindow]:
    """The patient's completed doses with a window, the latest-ended first."""
    pairs = [
        ("patient", patient),
        ("status", "completed"),
        ("_sort", "-effective-time"),
        ("_count", str(_DOSES_SEEN)),
        ("_total", "none"),
    ]
    found = interactions.search(session, "MedicationAdministration", pairs, strict=True)
    base = interactions.settings.canonical_base
    windows = [w for dose in found.resources if (w := as_window(dose, base)) is not None]
    return sorted(windows, key=lambda w: w.ended, reverse=True)


def current_window(
    interactions: Interactions, session: Session, patient: str, now: datetime
) -> DoseWindow | None:
    """The window of the newest dose whose window has not closed (None: no such dose)."""
    open_ones = [w for w in dose_windows(interactions, session, patient) if w.window_end > now]
    return open_ones[0] if open_ones else None


def window_before(
    interactions: Interactions, session: Session, patient: str, start: datetime
) -> DoseWindow | None:
    """The window of the newest dose that ended before a session starting at `start`."""
    for window in dose_windows(interactions, session, patient):
        if window.ended <= start:
            return window
    return None


def window_of_session(
    interactions: Interactions, session: Session, patient: str, start: datetime, end: datetime
) -> DoseWindow | None:
    """The window of the dose that opened an EMDR session [start, end): the patient's newest
    completed dose that ended by `start` or, for in-session EMDR (a protocol whose window opens
    at 0 h, the EMDR inside the dosing session), was given during it: its administration began
    before the session ended. A dose cannot overlap any other EMDR session of the patient (the
    overlap rule allows only the in-session one), so for those this is the newest dose that
    ended before the session."""
    for window in dose_windows(interactions, session, patient):
        if window.ended <= start or (window.started is not None and window.started < end):
            return window
    return None
