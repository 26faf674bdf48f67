"""One patient's timeline rows: scores, completed doses and EMDR sessions, oldest first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.outcomes.timeline.tables import DOSES, SCORES, SESSIONS

# EMDR sessions booked or held; holds (pending), proposals and sessions that did not take
# place (cancelled, noshow, entered-in-error) are not part of the timeline.
_ON_TIMELINE = ("booked", "arrived", "checked-in", "fulfilled")


@dataclass(frozen=True)
class Score:
    obs_id: str
    measure: str
    effective: datetime
    value: float


@dataclass(frozen=True)
class Dose:
    dose_id: str
    start: datetime
    window_start: datetime | None
    optimal_start: datetime | None
    optimal_end: datetime | None
    window_end: datetime | None


@dataclass(frozen=True)
class EmdrSession:
    appointment_id: str
    start: datetime
    dose_id: str | None
    offset_hours: float | None


@dataclass(frozen=True)
class Timeline:
    scores: list[Score]
    doses: list[Dose]
    sessions: list[EmdrSession]

    @property
    def first_dose(self) -> datetime | None:
        """When the first completed dose started (None: no dose yet)."""
        return self.doses[0].start if self.doses else None


def patient_timeline(session: Session, patient_id: str) -> Timeline:
    """The patient's rows of the three timeline tables (three indexed queries)."""
    scores = session.execute(
        select(SCORES.c.obs_id, SCORES.c.measure, SCORES.c.effective, SCORES.c.value)
        .where(SCORES.c.patient_id == patient_id)
        .order_by(SCORES.c.effective, SCORES.c.obs_id)
    ).all()
    doses = session.execute(
        select(
            DOSES.c.dose_id,
            DOSES.c.start,
            DOSES.c.window_start,
            DOSES.c.optimal_start,
            DOSES.c.optimal_end,
            DOSES.c.window_end,
        )
        .where(DOSES.c.patient_id == patient_id)
        .order_by(DOSES.c.start, DOSES.c.dose_id)
    ).all()
    sessions = session.execute(
        select(
            SESSIONS.c.appointment_id,
            SESSIONS.c.start,
            SESSIONS.c.dose_id,
            SESSIONS.c.offset_hours,
        )
        .where(
            SESSIONS.c.patient_id == patient_id,
            SESSIONS.c.start.is_not(None),
            SESSIONS.c.status.in_(_ON_TIMELINE),
        )
        .order_by(SESSIONS.c.start, SESSIONS.c.appointment_id)
    ).all()
    return Timeline(
        [Score(*row) for row in scores],
        [Dose(*row) for row in doses],
        [EmdrSession(*row) for row in sessions],
    )
