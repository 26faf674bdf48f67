"""EMDR sessions that took place, as the programme counts them, read in SQL.

A session took place when its Appointment is `fulfilled` or an Encounter of it is `finished`
(a booked session whose visit was recorded counts even before the Appointment is closed).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import CTE, ColumnElement, and_, case, exists, func, or_, select
from sqlalchemy.orm import Session, aliased

from services.outcomes.timeline.tables import DOSES, ENCOUNTERS, SCORES, SESSIONS


def took_place() -> ColumnElement[bool]:
    """The condition on SESSIONS under which the session happened."""
    finished = (
        select(ENCOUNTERS.c.encounter_id)
        .where(
            ENCOUNTERS.c.appointment_id == SESSIONS.c.appointment_id,
            ENCOUNTERS.c.status == "finished",
        )
        .correlate(SESSIONS)
    )
    return or_(SESSIONS.c.status == "fulfilled", exists(finished))


def window_adherence(session: Session, cohort: CTE) -> tuple[int, int]:
    """(sessions that took place, of which inside their dose's optimal window); a session
    with no dose, or whose dose has no stamped window, is not inside."""
    inside = and_(
        DOSES.c.optimal_start.is_not(None),
        DOSES.c.optimal_end.is_not(None),
        SESSIONS.c.start >= DOSES.c.optimal_start,
        SESSIONS.c.start <= DOSES.c.optimal_end,
    )
    query = (
        select(func.count(), func.sum(case((inside, 1), else_=0)))
        .select_from(
            SESSIONS.join(cohort, cohort.c.patient_id == SESSIONS.c.patient_id).outerjoin(
                DOSES,
                and_(
                    DOSES.c.dose_id == SESSIONS.c.dose_id,
                    DOSES.c.patient_id == SESSIONS.c.patient_id,
                ),
            )
        )
        .where(took_place())
    )
    total, inside_count = session.execute(query).one()
    return int(total), int(inside_count or 0)


@dataclass(frozen=True)
class SessionRow:
    """One EMDR session that took place after a dose, with its outcomes where measured."""

    appointment_id: str
    patient_id: str
    offset_hours: float | None
    # First SUDS minus last SUDS in the session's encounter (None: fewer than two).
    suds_reduction: float | None
    # First PCL-5 after the session minus the last on or before its dose's start.
    pcl5_change: float | None


def _score_in_session(measure: str, *, first: bool) -> ColumnElement[float]:
    """The first (or last) score of `measure` taken in an encounter of the outer session."""
    order = (
        (SCORES.c.effective, SCORES.c.obs_id)
        if first
        else (SCORES.c.effective.desc(), SCORES.c.obs_id.desc())
    )
    return (
        select(SCORES.c.value)
        .join(ENCOUNTERS, ENCOUNTERS.c.encounter_id == SCORES.c.encounter_id)
        .where(
            ENCOUNTERS.c.appointment_id == SESSIONS.c.appointment_id,
            SCORES.c.patient_id == SESSIONS.c.patient_id,
            SCORES.c.measure == measure,
        )
        .order_by(*order)
        .limit(1)
        .correlate(SESSIONS)
        .scalar_subquery()
    )


def _scores_in_session(measure: str) -> ColumnElement[int]:
    return (
        select(func.count())
        .select_from(SCORES.join(ENCOUNTERS, ENCOUNTERS.c.encounter_id == SCORES.c.encounter_id))
        .where(
            ENCOUNTERS.c.appointment_id == SESSIONS.c.appointment_id,
            SCORES.c.patient_id == SESSIONS.c.patient_id,
            SCORES.c.measure == measure,
        )
        .correlate(SESSIONS)
        .scalar_subquery()
    )


def _score_around(measure: str, dose: object, *, before_dose: bool) -> ColumnElement[float]:
    """The last score on or before the dose's start, or the first after the session."""
    scores = aliased(SCORES)
    if before_dose:
        when = scores.c.effective <= dose.c.start  # type: ignore[attr-defined]
        order = (scores.c.effective.desc(), scores.c.obs_id.desc())
    else:
        ended = func.coalesce(SESSIONS.c.end, SESSIONS.c.start)
        when = scores.c.effective >= ended
        order = (scores.c.effective, scores.c.obs_id)
    return (
        select(scores.c.value)
        .where(scores.c.patient_id == SESSIONS.c.patient_id, scores.c.measure == measure, when)
        .order_by(*order)
        .limit(1)
        .correlate(SESSIONS, dose)  # type: ignore[arg-type]
        .scalar_subquery()
    )


def sessions_after_doses(session: Session, cohort: CTE) -> list[SessionRow]:
    """Every counted EMDR session that took place and names its dose, with its outcomes
    looked up in SQL (sessions are few; scores are not)."""
    dose = aliased(DOSES)
    hours = SESSIONS.c.offset_hours
    query = (
        select(
            SESSIONS.c.appointment_id,
            SESSIONS.c.patient_id,
            hours,
            SESSIONS.c.start,
            dose.c.ended,
            _score_in_session("suds", first=True) - _score_in_session("suds", first=False),
            _scores_in_session("suds"),
            _score_around("pcl5-total", dose, before_dose=False)
            - _score_around("pcl5-total", dose, before_dose=True),
        )
        .select_from(
            SESSIONS.join(cohort, cohort.c.patient_id == SESSIONS.c.patient_id).join(
                dose,
                and_(
                    dose.c.dose_id == SESSIONS.c.dose_id,
                    dose.c.patient_id == SESSIONS.c.patient_id,
                ),
            )
        )
        .where(took_place())
        .order_by(SESSIONS.c.appointment_id)
    )
    rows = []
    for appointment_id, patient_id, offset, start, ended, suds, suds_n, pcl5 in session.execute(
        query
    ):
        rows.append(
            SessionRow(
                appointment_id=appointment_id,
                patient_id=patient_id,
                offset_hours=_offset(offset, start, ended),
                suds_reduction=float(suds) if suds is not None and suds_n >= 2 else None,
                pcl5_change=float(pcl5) if pcl5 is not None else None,
            )
        )
    return rows


def _offset(stamped: float | None, start: datetime | None, ended: datetime | None) -> float | None:
    """The offset scheduling stamped; else the hours from the dose's end to the start."""
    if stamped is not None:
        return float(stamped)
    if start is None or ended is None:
        return None
    return (start - ended).total_seconds() / 3600.0
