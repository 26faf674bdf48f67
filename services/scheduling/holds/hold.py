"""Reaction to outcomes' Observation events: a pre-dose blood pressure above the protocol's
hold threshold holds that day's dosing session; a post-dose reading may raise a rescue."""

from __future__ import annotations

from typing import Any

from services.scheduling.holds.doses import completed_doses, session_of
from services.scheduling.holds.issues import HOLD, hold_url, monitoring, open_hold, raise_issue
from services.scheduling.holds.rescue import check_rescue
from services.scheduling.holds.sessions import psychiatrist, sessions_on_day
from services.scheduling.holds.vitals import Reading, hold_problem, reading_of
from shared.events.reactions import ReactionContext
from shared.fhir.errors import FHIRError


def _hold(context: ReactionContext, appointment: dict[str, Any], reading: Reading, why: str):
    """Hold one session: the issue, then the psychiatrist's participation `needs-action`."""
    interactions, session = context.interactions, context.session
    base = interactions.settings.canonical_base
    reference = f"Appointment/{appointment['id']}"
    patient = next(
        str(p["actor"]["reference"])
        for p in appointment["participant"]
        if str((p.get("actor") or {}).get("reference", "")).startswith("Patient/")
    )
    issue = raise_issue(
        interactions,
        session,
        code=HOLD,
        patient=patient,
        implicated=[reading.reference, reference],
        detail=f"{why}: the dose of {reference} is held until a psychiatrist releases it",
    )
    participants = [dict(p) for p in appointment.get("participant") or []]
    index = psychiatrist(appointment)
    if index is not None:
        participants[index]["status"] = "needs-action"
    others = [e for e in appointment.get("extension") or [] if e.get("url") != hold_url(base)]
    named = {"reference": f"DetectedIssue/{issue['id']}"}
    marker = {"url": hold_url(base), "valueReference": named}
    held = {**appointment, "participant": participants, "extension": [*others, marker]}
    version = int(appointment["meta"]["versionId"])
    interactions.update(session, "Appointment", appointment["id"], held, if_match=version)


def react_to_vital_sign(context: ReactionContext) -> None:
    """Hold or rescue on a final vital-sign Observation of a patient (others ignored)."""
    interactions, session = context.interactions, context.session
    try:
        stored = interactions.store.read(session, "Observation", context.subject[1])
    except FHIRError:
        return  # deleted since: nothing to act on
    observation = stored.resource or {}
    patient = (observation.get("subject") or {}).get("reference")
    reading = reading_of(observation)
    if reading is None or not str(patient).startswith("Patient/"):
        return
    doses = completed_doses(interactions, session, str(patient))
    if check_rescue(context, str(patient), reading, doses):
        return
    why = hold_problem(reading, monitoring())
    if why is None:
        return
    dosed = {session_of(dose) for dose in doses}
    for appointment in sessions_on_day(interactions, session, str(patient), reading.taken):
        if appointment["id"] in dosed or open_hold(interactions, session, appointment["id"]):
            continue  # after its dose (a rescue's matter), or held already
        _hold(context, appointment, reading, why)
