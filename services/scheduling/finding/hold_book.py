"""`POST [base]/Appointment/$hold` and `$book`: a proposal from `$find` held (pending, with
its expiry) or booked; the booking rules decide, so a slot gone meanwhile is their 409."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from services.scheduling.booking.session import BOOKABLE
from services.scheduling.finding import hold_expires_url, window_override_url
from services.scheduling.finding.sweep import LAPSED, sweep
from services.scheduling.replanning.sessions import opened_by_dose_url
from shared.auth.needs import check_letters
from shared.auth.principal import current_principal
from shared.fhir.dates import format_instant, utcnow
from shared.fhir.errors import FHIRError, invalid
from shared.fhir.operations import OperationCall, OperationResult
from shared.fhir.references import parse_reference

HOLD_RULE = "book-needs-proposal-or-hold"
GIVEN = "Parameters.parameter.where(name='appointment').resource"


def _given(call: OperationCall) -> dict[str, Any]:
    appointment = call.one("appointment")
    if not isinstance(appointment, dict) or appointment.get("resourceType") != "Appointment":
        raise invalid("appointment is an Appointment resource", [GIVEN])
    return appointment


def _actors(appointment: dict[str, Any]) -> list[str]:
    found = []
    for participant in appointment.get("participant") or []:
        res_type, res_id = parse_reference((participant.get("actor") or {}).get("reference") or "")
        if res_type in BOOKABLE and res_id:
            found.append(f"{res_type}/{res_id}")
    return found


def _as(appointment: dict[str, Any], status: str, base: str, expires: str | None) -> dict:
    """The appointment in `status`, its hold expiry set (or gone), the patient's answer
    accepted once booked."""
    # The hold's expiry is set afresh; the dose that opened an EMDR session's window is the
    # server's to record (a newer dose may have come since `$find`), unless an override
    # names one on purpose.
    dropped_urls = {hold_expires_url(base)}
    if not any(
        e.get("url") == window_override_url(base) for e in appointment.get("extension") or []
    ):
        dropped_urls.add(opened_by_dose_url(base))
    extensions = [e for e in appointment.get("extension") or [] if e.get("url") not in dropped_urls]
    if expires is not None:
        extensions.append({"url": hold_expires_url(base), "valueDateTime": expires})
    # A booked appointment was not cancelled: a swept hold's cancelationReason goes.
    dropped = ("extension", "meta", "cancelationReason")
    body = {k: v for k, v in appointment.items() if k not in dropped}
    if extensions:
        body["extension"] = extensions
    if status == "booked":
        body["participant"] = [
            {**p, "status": "accepted"} if p.get("status") == "needs-action" else p
            for p in appointment.get("participant") or []
        ]
    return {**body, "status": status}


def _proposal(appointment: dict[str, Any]) -> dict[str, Any]:
    if appointment.get("status") != "proposed":
        raise invalid("appointment is a proposed Appointment (from $find)", [f"{GIVEN}.status"])
    return {k: v for k, v in appointment.items() if k != "id"}


def hold(call: OperationCall) -> OperationResult:
    interactions, session = call.interactions, call.session
    settings = interactions.settings
    proposal = _proposal(_given(call))
    now = utcnow()
    sweep(interactions, session, _actors(proposal), now)
    expires = format_instant(now + timedelta(minutes=settings.hold_minutes))
    body = _as(proposal, "pending", settings.canonical_base, expires)
    stored = interactions.create(session, "Appointment", body).stored
    assert stored is not None
    return OperationResult(stored.resource or {}, 201)


def _lapsed_and_swept(appointment: dict[str, Any], base: str) -> bool:
    """Whether the appointment is a hold the sweep cancelled because it lapsed (not one the
    clinic or the patient cancelled: that one stays cancelled)."""
    url = hold_expires_url(base)
    was_held = any(e.get("url") == url for e in appointment.get("extension") or [])
    reason = (appointment.get("cancelationReason") or {}).get("text")
    return was_held and appointment.get("status") == "cancelled" and reason == LAPSED


def _held(call: OperationCall, res_id: str) -> dict[str, Any]:
    """The stored hold, locked: pending (lapsed or not), or cancelled by the sweep because it
    lapsed; 409 for anything else (booked already, cancelled by someone, another state)."""
    interactions, session = call.interactions, call.session
    base = interactions.settings.canonical_base
    interactions.read(session, "Appointment", res_id)  # 404/410 as a read answers
    current = interactions.store.read(session, "Appointment", res_id, lock=True).resource or {}
    if current.get("status") == "pending" or _lapsed_and_swept(current, base):
        return current
    status = current.get("status")
    why = "cancelled, not by the lapse of its hold" if status == "cancelled" else status
    raise FHIRError(
        409,
        f"Rule {HOLD_RULE}: Appointment/{res_id} is {why}, not a hold",
        code="business-rule",
        expression=[f"{GIVEN}.id"],
    )


def book(call: OperationCall) -> OperationResult:
    interactions, session = call.interactions, call.session
    base = interactions.settings.canonical_base
    given = _given(call)
    res_id = given.get("id")
    if isinstance(res_id, str):
        # Booking a stored hold updates it: the operation's create scope is not enough.
        check_letters(current_principal.get(), "Appointment", "u")
    current = _held(call, res_id) if isinstance(res_id, str) else _proposal(given)
    sweep(interactions, session, _actors(current), utcnow(), keep=res_id)
    body = _as(current, "booked", base, None)
    if isinstance(res_id, str):
        # A lapsed hold that was swept is booked again if its slot is still free.
        version = int(current["meta"]["versionId"])
        stored = interactions.update(session, "Appointment", res_id, body, if_match=version)
    else:
        stored = interactions.create(session, "Appointment", body)
    assert stored.stored is not None
    return OperationResult(stored.stored.resource or {}, stored.status)
