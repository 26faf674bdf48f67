"""`$find`'s inputs read and checked: 422 naming the parameter at fault."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from services.scheduling.finding.windows import DoseWindow
from services.scheduling.schedule_slots import instant
from services.scheduling.session_types import session_type_codes, session_type_system
from shared.auth.access_checks import require_visible
from shared.fhir.errors import FHIRError, invalid
from shared.fhir.operations import OperationCall
from shared.fhir.references import parse_reference

WINDOW_RULE = "find-needs-window"
# Dosing sessions keep to the protocol's cadence, interval and course rules, which `$find`
# does not apply: they are booked directly (a booked Appointment), where those rules decide.
NOT_FOUND_TYPES = ("dosing",)


def where(name: str, value: str) -> str:
    return f"Parameters.parameter.where(name='{name}').{value}"


def patient_of(call: OperationCall) -> str:
    """The patient as `Patient/<id>`; 404 as a read answers when the caller may not see that
    patient (another practice's: their busy times are theirs)."""
    reference = (call.one("patient") or {}).get("reference") or ""
    res_type, res_id = parse_reference(reference)
    if res_type != "Patient" or not res_id or "://" in reference:
        raise invalid(
            "patient is a Reference to Patient/<id>", [where("patient", "valueReference")]
        )
    # A patient not replicated yet is no one's to hide: the search goes on (as a write naming
    # that patient would).
    require_visible(call.session, call.interactions.definition("Patient"), res_id)
    return f"Patient/{res_id}"


def service_type(call: OperationCall) -> tuple[str, dict[str, Any]]:
    """The session type as a `service-type` token and as the concept proposals carry."""
    base = call.interactions.settings.canonical_base
    system, known = session_type_system(base), session_type_codes(base)
    concept: dict[str, Any] = call.one("service-type") or {}
    for coding in concept.get("coding") or []:
        if coding.get("system") == system and coding.get("code") in NOT_FOUND_TYPES:
            raise invalid(
                f"service-type {coding['code']}: $find does not propose dosing sessions; they "
                "are booked directly (POST or PUT an Appointment), where the dosing protocol's "
                "cadence, interval and course rules decide",
                [where("service-type", "valueCodeableConcept")],
            )
        if coding.get("system") == system and coding.get("code") in known:
            return f"{system}|{coding['code']}", {
                "coding": [{"system": system, "code": coding["code"]}]
            }
    raise invalid(
        f"service-type names a session type of {system} ({', '.join(known)})",
        [where("service-type", "valueCodeableConcept")],
    )


def _moment(call: OperationCall, name: str) -> datetime | None:
    value = call.one(name)
    return instant(value) if isinstance(value, str) else None


def period(call: OperationCall, dose: DoseWindow | None, patient: str) -> tuple[datetime, datetime]:
    """[start, end) to search: as given, else the current window's bounds; 422 when neither."""
    start, end = _moment(call, "start"), _moment(call, "end")
    if dose is None and (start is None or end is None):
        raise FHIRError(
            422,
            f"Rule {WINDOW_RULE}: {patient} has no open plasticity window (no completed dose "
            "whose window ends in the future): give start and end",
            code="business-rule",
            expression=[where("start", "valueDateTime"), where("end", "valueDateTime")],
        )
    since = start if start is not None else dose.window_start  # type: ignore[union-attr]
    until = end if end is not None else dose.window_end  # type: ignore[union-attr]
    if not since < until:
        raise invalid("end must be after start", [where("end", "valueDateTime")])
    return since, until
