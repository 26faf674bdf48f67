"""Programme sessions: Appointments coded with a session type, their patient, and the
extensions re-planning reads and writes (documented in protocols/README.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from services.scheduling.session_types import session_type_system

if TYPE_CHECKING:
    from shared.fhir.rules import WriteContext

SESSION_TYPES = ("preparation", "dosing", "emdr", "integration")
# Appointment states that still hold a planned session (not begun, not ended).
OPEN = ("proposed", "pending", "booked", "waitlist")


def opened_by_dose_url(base: str) -> str:
    """EMDR Appointment: the dose whose plasticity window the session was booked in
    (sub-extensions `dose` valueReference and `offset-hours` valueDecimal)."""
    return f"{base}/StructureDefinition/opened-by-dose"


def replanned_url(base: str) -> str:
    """EMDR Appointment put back to proposed: `reason` (string) and `cause` (reference)."""
    return f"{base}/StructureDefinition/replanned"


def session_type(appointment: dict[str, Any], base: str) -> str | None:
    """The appointment's session-type code (None: not a programme session)."""
    system = session_type_system(base)
    for concept in appointment.get("serviceType") or []:
        for coding in (concept or {}).get("coding") or []:
            if coding.get("system") == system and coding.get("code") in SESSION_TYPES:
                return str(coding["code"])
    return None


def service_type_token(base: str, *codes: str) -> str:
    """A `service-type` search value matching any of `codes` (all session types if none)."""
    system = session_type_system(base)
    return ",".join(f"{system}|{code}" for code in codes or SESSION_TYPES)


def patient_of(appointment: dict[str, Any]) -> str | None:
    """The id of the Patient taking part (None when no patient does)."""
    for participant in appointment.get("participant") or []:
        reference = ((participant or {}).get("actor") or {}).get("reference")
        if isinstance(reference, str) and reference.startswith("Patient/"):
            return reference.removeprefix("Patient/")
    return None


def names(reference: Any, target: str) -> bool:
    """Whether a Reference points at `target` ("Type/id"), versioned or not."""
    value = reference.get("reference") if isinstance(reference, dict) else None
    return isinstance(value, str) and (value == target or value.startswith(f"{target}/_history/"))


def opened_by_extension(base: str, dose: str, offset_hours: float | None) -> dict[str, Any]:
    """The extension as booking writes it: sub-extensions `dose` and `offset-hours`."""
    subs: list[dict[str, Any]] = [{"url": "dose", "valueReference": {"reference": dose}}]
    if offset_hours is not None:
        subs.append({"url": "offset-hours", "valueDecimal": offset_hours})
    return {"url": opened_by_dose_url(base), "extension": subs}


def opened_by(appointment: dict[str, Any], base: str) -> dict[str, Any] | None:
    """The Reference to the dose that opened the EMDR session's window, if recorded (the
    complex form, or a bare valueReference as a simpler client may send)."""
    url = opened_by_dose_url(base)
    for extension in appointment.get("extension") or []:
        if extension.get("url") != url:
            continue
        if "valueReference" in extension:
            return extension["valueReference"]
        for sub in extension.get("extension") or []:
            if sub.get("url") == "dose":
                return sub.get("valueReference")
    return None


def previous_content(context: WriteContext) -> dict[str, Any] | None:
    """The resource as stored before this write (None: new or deleted before)."""
    previous = context.previous
    return previous.resource if previous is not None else None
