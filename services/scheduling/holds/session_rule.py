"""Write rule: a protocol dose belongs to a dosing session of its patient that is booked or
arrived (fulfilled: a dose recorded late), and not on a pre-dose hold."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from services.scheduling.dosing.course import find_course
from services.scheduling.holds.issues import open_hold
from services.scheduling.holds.sessions import has_patient, is_dosing
from shared.fhir.errors import FHIRError

if TYPE_CHECKING:
    from shared.fhir.rules import WriteContext

SUPPORTING = "MedicationAdministration.supportingInformation"
# A session a dose may be given in; `fulfilled` lets a dose be recorded after the session.
OPEN_FOR_DOSES = ("booked", "arrived", "fulfilled")


def _refuse(status: int, text: str, where: str) -> FHIRError:
    code = "business-rule" if status == 422 else "conflict"
    return FHIRError(status, f"Dosing session rule: {text}", code=code, expression=[where])


def _session(context: WriteContext, administration: dict[str, Any]) -> tuple[dict, str]:
    """The one Appointment the dose names and where it is named; 422 otherwise."""
    named = [
        (index, item["reference"])
        for index, item in enumerate(administration.get("supportingInformation") or [])
        if isinstance(item, dict) and str(item.get("reference", "")).startswith("Appointment/")
    ]
    if len(named) != 1:
        text = "a protocol dose names its dosing session: one Appointment in supportingInformation"
        raise _refuse(422, text, SUPPORTING)
    index, reference = named[0]
    where = f"{SUPPORTING}[{index}]"
    try:
        stored = context.interactions.read(
            context.session, "Appointment", reference.removeprefix("Appointment/")
        ).stored
    except FHIRError:
        raise _refuse(422, f"{reference} is not an Appointment stored here", where) from None
    assert stored is not None and stored.resource is not None
    return stored.resource, where


def check_session(context: WriteContext) -> None:
    """Write rule on MedicationAdministration (protocol medications only)."""
    administration = context.resource
    if administration is None or find_course(context, administration) is None:
        return
    appointment, where = _session(context, administration)
    reference = f"Appointment/{appointment['id']}"
    base = context.interactions.settings.canonical_base
    if not is_dosing(appointment, base):
        raise _refuse(422, f"{reference} is not a dosing session", where)
    subject = (administration.get("subject") or {}).get("reference")
    if not isinstance(subject, str) or not has_patient(appointment, subject):
        raise _refuse(422, f"{reference} is not a session of {subject}", where)
    status = appointment.get("status")
    if status not in OPEN_FOR_DOSES:
        allowed = ", ".join(OPEN_FOR_DOSES)
        raise _refuse(409, f"{reference} is '{status}'; a dose needs one of: {allowed}", where)
    hold = open_hold(context.interactions, context.session, appointment["id"])
    if hold is not None:
        raise FHIRError(
            409,
            f"Pre-dose hold rule: {reference} is on hold (DetectedIssue/{hold['id']}: "
            f"{hold.get('detail')}); a psychiatrist releases it with "
            f"POST [base]/{reference}/$release-hold",
            code="business-rule",
            expression=[where],
        )
