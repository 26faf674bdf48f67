"""Who a booking books, across practices: a PractitionerRole stands for its Practitioner, and
the held Appointments of a participant are looked up without the caller's practice limits
(a practitioner or room shared by two practices is one person or room)."""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from services.scheduling.finding.busy_index import held_appointments
from shared.auth.access_checks import require_visible
from shared.db.models import ReferenceIndex, ResourceRow
from shared.fhir.errors import FHIRError
from shared.fhir.references import parse_reference

if TYPE_CHECKING:
    from shared.fhir.rules import WriteContext

_RESOURCES, _REFERENCES = ResourceRow.__table__, ReferenceIndex.__table__


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
    """Every Appointment holding time naming any of `actors` that starts before `until`,
    whoever's practice it is in (a rule's own look-up, not shown to the caller as such)."""
    return held_appointments(context.session, actors, None, until)


def caller_sees(context: WriteContext, res_type: str, res_id: str) -> bool:
    """Whether the caller's practices admit the resource."""
    definition = context.interactions.definition(res_type)
    try:
        require_visible(context.session, definition, res_id)
    except FHIRError:
        return False
    return True
