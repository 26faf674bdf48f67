"""Write rules: a dose that falls through (entered-in-error, not-done, deleted) or a dosing
session cancelled puts the EMDR sessions booked in its window back to `proposed`, in the
same transaction, with the `replanned` extension saying why (each its own update event)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from services.scheduling.dosing.course import NOT_GIVEN
from services.scheduling.replanning.sessions import (
    OPEN,
    names,
    opened_by,
    patient_of,
    previous_content,
    replanned_url,
    service_type_token,
    session_type,
)

if TYPE_CHECKING:
    from shared.fhir.rules import WriteContext

# A dosing session in these states gives no dose.
_CALLED_OFF = ("cancelled", "noshow", "entered-in-error")


def _search(context: WriteContext, res_type: str, query: list[tuple[str, str]]) -> list[dict]:
    found = context.interactions.search(context.session, res_type, query, strict=True)
    return found.resources


def _replan(context: WriteContext, patient_id: str, dose: str, cause: str, why: str) -> None:
    """Re-propose the patient's open EMDR sessions opened by `dose`, naming `cause`."""
    base = context.interactions.settings.canonical_base
    query = [
        ("patient", f"Patient/{patient_id}"),
        ("service-type", service_type_token(base, "emdr")),
        ("status", ",".join(OPEN)),
        ("_count", "200"),
    ]
    url = replanned_url(base)
    for emdr in _search(context, "Appointment", query):
        if not names(opened_by(emdr, base), dose):
            continue
        flags = [e for e in emdr.get("extension") or [] if e.get("url") == url]
        if emdr["status"] == "proposed" and flags:
            continue  # already waiting to be rescheduled
        others = [e for e in emdr.get("extension") or [] if e.get("url") != url]
        flag = {
            "url": url,
            "extension": [
                {"url": "reason", "valueString": why},
                {"url": "cause", "valueReference": {"reference": cause}},
            ],
        }
        body = {**emdr, "status": "proposed", "extension": [*others, flag]}
        version = int(emdr["meta"]["versionId"])
        context.interactions.update(
            context.session, "Appointment", emdr["id"], body, if_match=version
        )


def replan_after_dose(context: WriteContext) -> None:
    """Rule on MedicationAdministration: a given dose now recorded as not given."""
    before = previous_content(context)
    if before is None or before.get("status") in NOT_GIVEN:
        return
    after = context.resource
    status = "deleted" if after is None else after.get("status")
    if status not in (*NOT_GIVEN, "deleted"):
        return
    patient = ((after or before).get("subject") or {}).get("reference", "")
    if not patient.startswith("Patient/"):
        return
    dose = f"MedicationAdministration/{context.res_id}"
    why = f"The dose that opened this session's window is now {status}: rebook in a new window"
    _replan(context, patient.removeprefix("Patient/"), dose, dose, why)


def replan_after_dosing_session(context: WriteContext) -> None:
    """Rule on Appointment: a dosing session called off re-proposes the EMDR sessions
    whose opening dose names it in `supportingInformation`."""
    before, after = previous_content(context), context.resource
    base = context.interactions.settings.canonical_base
    if after is None or before is None or session_type(after, base) != "dosing":
        return
    if after.get("status") not in _CALLED_OFF or before.get("status") in _CALLED_OFF:
        return
    patient_id = patient_of(after)
    if patient_id is None:
        return
    session = f"Appointment/{context.res_id}"
    query = [("patient", f"Patient/{patient_id}"), ("_count", "200")]
    why = f"The dosing session of this session's window was {after['status']}: rebook"
    for dose in _search(context, "MedicationAdministration", query):
        if any(names(ref, session) for ref in dose.get("supportingInformation") or []):
            _replan(context, patient_id, f"MedicationAdministration/{dose['id']}", session, why)
