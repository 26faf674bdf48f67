"""The rows of the research dataset: consented patients and their scores, by SQL joins over
the timeline tables."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, and_, exists, func, or_, select
from sqlalchemy.orm import Session

from services.outcomes.timeline.tables import CONSENTS, DOSES, ENCOUNTERS, SCORES, SESSIONS
from shared.auth.access import visible_patient_ids
from shared.db.models import ResourceRow


@dataclass(frozen=True)
class ScoreRow:
    """One score of the dataset, before de-identification."""

    patient_id: str
    measure: str
    effective: datetime
    value: float
    first_dose: datetime | None
    session_offset_hours: float | None


def consented_patients(
    session: Session, now: datetime, practices: frozenset[str] | None
) -> list[str]:
    """Patients with scores and an active research Consent covering `now` (within the
    caller's practices when it is limited to them), in id order."""
    query: Select[tuple[str]] = (
        select(CONSENTS.c.patient_id)
        .where(
            CONSENTS.c.research.is_(True),
            CONSENTS.c.status == "active",
            or_(CONSENTS.c.period_start.is_(None), CONSENTS.c.period_start <= now),
            or_(CONSENTS.c.period_end.is_(None), CONSENTS.c.period_end >= now),
            exists().where(SCORES.c.patient_id == CONSENTS.c.patient_id),
            # A patient deleted at intake has left the programme's data.
            exists().where(
                ResourceRow.res_type == "Patient",
                ResourceRow.res_id == CONSENTS.c.patient_id,
                ResourceRow.deleted.is_(False),
            ),
        )
        .distinct()
        .order_by(CONSENTS.c.patient_id)
    )
    if practices is not None:
        query = query.where(CONSENTS.c.patient_id.in_(visible_patient_ids(practices)))
    return list(session.execute(query).scalars())


def score_rows(session: Session, patients: Sequence[str]) -> Iterator[ScoreRow]:
    """The scores of these patients with their first dose and, for a score taken in an EMDR
    session, that session's offset from its dose; by patient, then time."""
    first_doses = (
        select(DOSES.c.patient_id, func.min(DOSES.c.start).label("first_dose"))
        .where(DOSES.c.patient_id.in_(patients))
        .group_by(DOSES.c.patient_id)
        .subquery()
    )
    query = (
        select(
            SCORES.c.patient_id,
            SCORES.c.measure,
            SCORES.c.effective,
            SCORES.c.value,
            first_doses.c.first_dose,
            SESSIONS.c.offset_hours,
        )
        .select_from(SCORES)
        .outerjoin(first_doses, first_doses.c.patient_id == SCORES.c.patient_id)
        .outerjoin(ENCOUNTERS, ENCOUNTERS.c.encounter_id == SCORES.c.encounter_id)
        .outerjoin(
            SESSIONS,
            and_(
                SESSIONS.c.appointment_id == ENCOUNTERS.c.appointment_id,
                SESSIONS.c.patient_id == SCORES.c.patient_id,
            ),
        )
        .where(SCORES.c.patient_id.in_(patients))
        .order_by(SCORES.c.patient_id, SCORES.c.effective, SCORES.c.obs_id)
    )
    for row in session.execute(query):
        yield ScoreRow(*row)
