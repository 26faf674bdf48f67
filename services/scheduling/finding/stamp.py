"""The enricher of the EMDR window rule: the session records the dose that opened its
window, and the offset from the end of that dose as the server computes it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from services.scheduling.finding.emdr_window import dose_window, emdr_session
from services.scheduling.replanning.sessions import opened_by_dose_url, opened_by_extension

if TYPE_CHECKING:
    from shared.fhir.rules import WriteContext


def stamp_opened_by(context: WriteContext) -> dict[str, Any]:
    """The EMDR session with `opened-by-dose` set (the client's offset never kept); as it is
    when no dose before it opened a window."""
    appointment = context.resource
    assert appointment is not None
    mine = emdr_session(context)
    if mine is None or mine.start is None:
        return appointment
    window = dose_window(context, mine)
    if window is None:
        return appointment
    base = context.interactions.settings.canonical_base
    url = opened_by_dose_url(base)
    others = [e for e in appointment.get("extension") or [] if e.get("url") != url]
    stamped = opened_by_extension(base, window.dose, window.offset_hours(mine.start))
    return {**appointment, "extension": [*others, stamped]}
