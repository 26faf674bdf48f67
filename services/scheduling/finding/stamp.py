"""The enricher of the EMDR window rule: the session records the dose that opened its
window, and the offset from the end of that dose as the server computes it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from services.scheduling.finding.emdr_window import dose_window, emdr_session
from services.scheduling.replanning.sessions import opened_by_dose_url, opened_by_extension

if TYPE_CHECKING:
    from shared.fhir.rules import WriteContext


def stamp_opened_by(context: WriteContext) -> dict[str, Any]:
    """The EMDR session with `opened-by-dose` set afresh on every write that holds time or
    records it fulfilled (the client's offset never kept); without it when no dose opened a
    window for it (a stale one sent back is dropped)."""
    appointment = context.resource
    assert appointment is not None
    mine = emdr_session(context, fulfilled=True)
    if mine is None or mine.start is None:
        return appointment
    window = dose_window(context, mine)
    base = context.interactions.settings.canonical_base
    url = opened_by_dose_url(base)
    others = [e for e in appointment.get("extension") or [] if e.get("url") != url]
    if window is None:
        if len(others) == len(appointment.get("extension") or []):
            return appointment
        changed = {k: v for k, v in appointment.items() if k != "extension"}
        return {**changed, "extension": others} if others else changed
    stamped = opened_by_extension(base, window.dose, window.offset_hours(mine.start))
    return {**appointment, "extension": [*others, stamped]}
