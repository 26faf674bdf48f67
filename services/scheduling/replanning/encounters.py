"""Write rule on Appointment: a programme session's Encounter follows it, in the same
transaction. Arrived opens one (in-progress), fulfilled finishes it, cancelled or no-show
after arrival cancels it; never more than one Encounter per Appointment."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from services.scheduling.replanning.sessions import patient_of, session_type
from shared.fhir.dates import format_instant, utcnow
from shared.fhir.errors import invalid

if TYPE_CHECKING:
    from shared.fhir.rules import WriteContext

ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
_ENDED = ("finished", "cancelled", "entered-in-error")
# The Encounter status an Appointment status leads to.
_FOLLOWS = {"fulfilled": "finished", "cancelled": "cancelled", "noshow": "cancelled"}
_PEOPLE = ("Practitioner/", "PractitionerRole/")


def _serviced_by(appointment: dict[str, Any], base: str) -> dict[str, Any]:
    """The Appointment's session-type concept (Encounter.serviceType holds one)."""
    code = session_type(appointment, base)
    return next(
        c
        for c in appointment.get("serviceType") or []
        if any(x.get("code") == code for x in c.get("coding") or [])
    )


def _new_encounter(appointment_id: str, appointment: dict[str, Any], base: str) -> dict:
    actors = [(p.get("actor") or {}) for p in appointment.get("participant") or []]
    people = [a for a in actors if str(a.get("reference", "")).startswith(_PEOPLE)]
    places = [a for a in actors if str(a.get("reference", "")).startswith("Location/")]
    encounter: dict[str, Any] = {
        "resourceType": "Encounter",
        "status": "in-progress",
        "class": {"system": ACT_CODE, "code": "AMB", "display": "ambulatory"},
        "serviceType": _serviced_by(appointment, base),
        "subject": {"reference": f"Patient/{patient_of(appointment)}"},
        "appointment": [{"reference": f"Appointment/{appointment_id}"}],
        "period": {"start": format_instant(utcnow())},
    }
    if people:
        encounter["participant"] = [{"individual": actor} for actor in people]
    if places:
        encounter["location"] = [{"location": actor} for actor in places]
    return encounter


def follow_with_encounter(context: WriteContext) -> None:
    """Open, finish or cancel the session's Encounter as its Appointment moves."""
    appointment, base = context.resource, context.interactions.settings.canonical_base
    if appointment is None or session_type(appointment, base) is None:
        return
    status = appointment.get("status")
    if status not in ("arrived", *_FOLLOWS):
        return
    if patient_of(appointment) is None and status in ("arrived", "fulfilled"):
        raise invalid(
            "A programme session's Encounter needs the patient among the participants",
            ["Appointment.participant.actor"],
        )
    interactions, session = context.interactions, context.session
    query = [("appointment", f"Appointment/{context.res_id}"), ("_count", "1")]
    found = interactions.search(session, "Encounter", query, strict=True).resources
    if not found:
        # Cancelled or no-show before arrival opened nothing; fulfilled without an arrival
        # still records the session (opened and finished now).
        if status in ("arrived", "fulfilled"):
            encounter = _new_encounter(str(context.res_id), appointment, base)
            if status == "fulfilled":
                encounter["status"] = "finished"
                encounter["period"]["end"] = encounter["period"]["start"]
            interactions.create(session, "Encounter", encounter)
        return
    encounter = found[0]
    if status == "arrived" or encounter.get("status") in _ENDED:
        return  # already open, or already closed: nothing more to record
    period = {**(encounter.get("period") or {}), "end": format_instant(utcnow())}
    body = {**encounter, "status": _FOLLOWS[status], "period": period}
    version = int(encounter["meta"]["versionId"])
    interactions.update(session, "Encounter", encounter["id"], body, if_match=version)
