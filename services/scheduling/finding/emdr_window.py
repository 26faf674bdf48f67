"""The EMDR window rule: an EMDR session of a patient on a dosing course lies inside the
plasticity window of the dose that opened it, which the session records (`opened-by-dose`,
filled and its offset computed by the server); outside it only with a stated override.

The dose is computed again on every write that holds time, and on `fulfilled` ones: the
patient's newest completed dose that ended by the session's start, or that was given during
it (in-session EMDR). What the resource already names does not win: a dose carried over from
an earlier write (the previous stamp, or a `$find` proposal's) is replaced; a dose the client
names that differs is refused (422) unless the EMDR window override extension states why, and
then kept; on a `fulfilled` write (a record of a session held, to which the window rule does
not apply) a named dose of the patient is kept, and among doses that ended at the same instant
the client's choice stands."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from services.scheduling.booking.search import course
from services.scheduling.booking.session import Booking, booking
from services.scheduling.finding import window_override_url
from services.scheduling.finding.in_session import in_dosing_session
from services.scheduling.finding.windows import DoseWindow, as_window, window_of_session
from services.scheduling.replanning.sessions import (
    opened_by,
    opened_by_dose_url,
    previous_content,
)
from shared.fhir.dates import format_instant
from shared.fhir.errors import FHIRError, invalid
from shared.fhir.references import parse_reference

if TYPE_CHECKING:
    from shared.fhir.rules import WriteContext

EMDR_RULE = "emdr-outside-window"


def emdr_session(context: WriteContext, *, fulfilled: bool = False) -> Booking | None:
    """The EMDR session this write holds time for (or, with `fulfilled`, records as having
    taken place), of a patient on a dosing course."""
    appointment = context.resource
    if appointment is None:
        return None
    mine = booking(appointment, context.res_id, context.interactions.settings.canonical_base)
    took_place = (
        fulfilled and mine.status == "fulfilled" and mine.start is not None and mine.end is not None
    )
    if mine.session_type != "emdr" or not (mine.holds_time or took_place):
        return None
    if mine.patient is None:
        return None
    try:
        course(context, mine.patient)
    except FHIRError:
        return None  # no dosing course: EMDR on its own keeps to no window
    return mine


def _named(context: WriteContext, mine: Booking, reference: dict[str, Any]) -> DoseWindow:
    """The window of the dose the client named; 422 when it is no windowed dose of the patient."""
    base = context.interactions.settings.canonical_base
    where = f"Appointment.extension('{opened_by_dose_url(base)}')"
    res_type, res_id = parse_reference(str(reference.get("reference") or ""))
    dose = None
    if res_type == "MedicationAdministration" and res_id:
        try:
            dose = context.interactions.store.read(context.session, res_type, res_id).resource
        except FHIRError:
            dose = None
    window = as_window(dose, base) if dose else None
    subject = ((dose or {}).get("subject") or {}).get("reference")
    if window is None or subject != mine.patient:
        raise invalid(
            f"opened-by-dose names no completed dose of {mine.patient} with a plasticity window",
            [where],
        )
    return window


def _stamped_before(context: WriteContext, reference: str) -> bool:
    """Whether the stored version already records this dose (the client sends it back)."""
    base = context.interactions.settings.canonical_base
    before = opened_by(previous_content(context) or {}, base) or {}
    return before.get("reference") == reference


def dose_window(context: WriteContext, mine: Booking) -> DoseWindow | None:
    """The window of the dose that opened the session, computed by the server (see the
    module docstring); a differently named dose only with an override, else 422."""
    assert mine.patient is not None and mine.start is not None and mine.end is not None
    base = context.interactions.settings.canonical_base
    computed = window_of_session(
        context.interactions, context.session, mine.patient, mine.start, mine.end
    )
    named = opened_by(context.resource or {}, base)
    reference = str((named or {}).get("reference") or "")
    if not named or (computed is not None and reference == computed.dose):
        return computed
    if override_reason(context.resource or {}, base) is not None:
        return _named(context, mine, named)  # the clinic's stated choice
    if _stamped_before(context, reference):
        return computed  # the earlier stamp sent back: the newer dose replaces it
    if mine.status == "fulfilled":
        return _named(context, mine, named)  # a record of a session held: as the clinic says
    window = _named(context, mine, named)
    if computed is not None and window.ended == computed.ended:
        return window  # doses that ended together: the client's choice among them stands
    server = (
        f"the dose that opened its window is {computed.dose}"
        if computed
        else f"no completed dose of {mine.patient} ended before the session"
    )
    raise invalid(
        f"opened-by-dose names {reference or 'no dose'}, but {server}: the server records it. "
        f"Leave the extension out, or state why in {window_override_url(base)}",
        [f"Appointment.extension('{opened_by_dose_url(base)}')"],
    )


def override_reason(appointment: dict[str, Any], base: str) -> str | None:
    """Why the session may lie outside its window (None: no override); 422 when empty."""
    url = window_override_url(base)
    found = [e for e in appointment.get("extension") or [] if e.get("url") == url]
    if not found:
        return None
    reason = found[0].get("valueString")
    if len(found) > 1 or not isinstance(reason, str) or not reason.strip():
        raise invalid(
            "An EMDR window override is one valueString: the reason",
            [f"Appointment.extension('{url}')"],
        )
    return reason


def check_emdr_window(context: WriteContext) -> None:
    """Write rule: 409 `emdr-outside-window` for an EMDR session outside its dose's window,
    unless it is the in-session EMDR of a dosing session or an override states why."""
    mine = emdr_session(context)
    if mine is None:
        return
    assert mine.start is not None and mine.end is not None
    window = dose_window(context, mine)
    if window is not None and window.holds(mine.start, mine.end):
        return
    base = context.interactions.settings.canonical_base
    if override_reason(context.resource or {}, base) is not None:
        return
    if in_dosing_session(context, mine):
        return
    shown = (
        f"{window.dose} opened {format_instant(window.window_start)} to "
        f"{format_instant(window.window_end)}"
        if window
        else f"no completed dose of {mine.patient} ended before it"
    )
    raise FHIRError(
        409,
        f"Rule {EMDR_RULE}: an EMDR session must lie inside its dose's plasticity window; {shown}. "
        f"To book it anyway, state the reason in the extension {window_override_url(base)}",
        code="business-rule",
        expression=["Appointment.start"],
    )
