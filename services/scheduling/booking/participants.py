"""Who a booking books, across practices: a PractitionerRole stands for its Practitioner, and
the held Appointments of a participant are looked up without the caller's practice limits
(a practitioner or room shared by two practices is one person or room)."""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import and_, or_, select

from services.scheduling.booking.session import HOLDING
from shared.auth.access_checks import require_visible
from shared.db.models import DateIndex, ReferenceIndex, ResourceRow, TokenIndex
from shared.fhir.errors import FHIRError
from shared.fhir.references import parse_reference

if TYPE_CHECKING:
    from shared.fhir.rules import WriteContext

_RESOURCES = ResourceRow.__table__
_DATES, _REFERENCES, _TOKENS = DateIndex.__table__, ReferenceIndex.__table__, TokenIndex.__table__


def role_practitioner(context: WriteContext, role_id: str) -> str | None:
    """The `Practitioner/<id>` a stored PractitionerRole names (None: unknown or none)."""
    with contextlib.suppress(FHIRError):
        role = context.interactions.store.read(context.session, "PractitionerRole", role_id)
        reference = ((role.resource or {}).get("practitioner") or {}).get("reference") or ""
        res_type, res_id = parse_reference(reference)
        if res_type == "Practitioner" and res_id and "://" not in reference:
            return f"Practitioner/{res_id}"
    return None


def booked_as(context: WriteContext, reference: str) -> str:
    """The person or room a participant reference books: a PractitionerRole's Practitioner
    (the role itself when it names none)."""
    res_type, res_id = parse_reference(reference)
    if res_type == "PractitionerRole" and res_id:
        return role_practitioner(context, res_id) or reference
    return reference


def _roles_of(context: WriteContext, practitioner: str) -> list[str]:
    """The stored PractitionerRoles naming `practitioner`."""
    _, res_id = parse_reference(practitioner)
    ref = _REFERENCES.alias()
    query = (
        select(_RESOURCES.c.res_id)
        .select_from(ref)
        .join(_RESOURCES, _RESOURCES.c.pk == ref.c.resource_pk)
        .where(
            ref.c.res_type == "PractitionerRole",
            ref.c.param == "practitioner",
            ref.c.target_type == "Practitioner",
            ref.c.target_id == res_id,
            _RESOURCES.c.deleted.is_(False),
        )
    )
    return [f"PractitionerRole/{r}" for r in context.session.execute(query).scalars()]


def names_for(context: WriteContext, booked: str) -> list[str]:
    """The references an Appointment may name `booked` by (a Practitioner: also its roles)."""
    if booked.startswith("Practitioner/"):
        return [booked, *_roles_of(context, booked)]
    return [booked]


def held_before(context: WriteContext, actors: list[str], until: datetime) -> list[dict[str, Any]]:
    """Every booked, pending, arrived or checked-in Appointment naming any of `actors` that
    starts before `until`, whoever's practice it is in (a rule's own look-up, not shown to
    the caller as such)."""
    by_type: dict[str, list[str]] = {}
    for actor in actors:
        res_type, res_id = parse_reference(actor)
        if res_type and res_id:
            by_type.setdefault(res_type, []).append(res_id)
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
    return [orjson.loads(content) for content in context.session.execute(query).scalars()]


def caller_sees(context: WriteContext, res_type: str, res_id: str) -> bool:
    """Whether the caller's practices admit the resource."""
    definition = context.interactions.definition(res_type)
    try:
        require_visible(context.session, definition, res_id)
    except FHIRError:
        return False
    return True
