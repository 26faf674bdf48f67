"""The held Appointments of some participants starting in a period: one query over the
search indexes (the `actor` reference index drives; `status` and `date` filter).

The generic search builds its SQL per value (about 0.5 ms each): 60 actors cost 35 ms.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import and_, or_, select

from services.scheduling.booking.session import HOLDING
from shared.db.models import DateIndex, ReferenceIndex, ResourceRow, TokenIndex
from shared.fhir.references import parse_reference

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

# Core aliases: the ORM's adapt each column on every query (a third of the time).
_RESOURCES = ResourceRow.__table__
_DATES, _REFERENCES, _TOKENS = DateIndex.__table__, ReferenceIndex.__table__, TokenIndex.__table__


def held_appointments(
    session: Session, actors: list[str], since: datetime | None, until: datetime
) -> list[dict[str, Any]]:
    """The Appointments holding time (booked, pending, checked-in, arrived) naming any of
    `actors` ("Type/id") that start in [since, until) (since None: any time before `until`),
    whoever's practice they are in: the caller's practice limits do not apply here."""
    by_type: dict[str, list[str]] = defaultdict(list)
    for actor in actors:
        res_type, res_id = parse_reference(actor)
        if res_type and res_id:
            by_type[res_type].append(res_id)
    if not by_type:
        return []
    actor, status, start = _REFERENCES.alias(), _TOKENS.alias(), _DATES.alias()
    named = [
        and_(actor.c.target_type == t, actor.c.target_id.in_(ids)) for t, ids in by_type.items()
    ]
    query = (
        select(_RESOURCES.c.content)
        .distinct()
        .select_from(actor)
        .join(_RESOURCES, _RESOURCES.c.pk == actor.c.resource_pk)
        .join(status, and_(status.c.resource_pk == actor.c.resource_pk, status.c.param == "status"))
        .join(start, and_(start.c.resource_pk == actor.c.resource_pk, start.c.param == "date"))
        .where(
            actor.c.res_type == "Appointment",
            actor.c.param == "actor",
            or_(*named),
            status.c.res_type == "Appointment",
            status.c.code.in_(HOLDING),
            start.c.res_type == "Appointment",
            start.c.low < until,
            _RESOURCES.c.deleted.is_(False),
        )
    )
    if since is not None:
        query = query.where(start.c.low >= since)
    return [orjson.loads(content) for content in session.execute(query).scalars()]
