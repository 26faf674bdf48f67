"""The in-session exception: EMDR during the patient's own dosing session under a protocol
whose window opens at once (0 h), before that dose is recorded."""

from __future__ import annotations

from typing import TYPE_CHECKING

from services.scheduling.booking.overlap import in_session
from services.scheduling.booking.search import appointments
from services.scheduling.booking.session import HOLDING, Booking, booking
from services.scheduling.replanning.sessions import service_type_token
from shared.fhir.dates import format_instant

if TYPE_CHECKING:
    from shared.fhir.rules import WriteContext


def in_dosing_session(context: WriteContext, mine: Booking) -> bool:
    """Whether the EMDR session lies inside a held dosing session of its patient that the
    booking rules let it share (the overlap rule's own test)."""
    assert mine.patient is not None and mine.start is not None and mine.end is not None
    base = context.interactions.settings.canonical_base
    pairs = [
        ("patient", mine.patient),
        ("service-type", service_type_token(base, "dosing")),
        ("status", ",".join(HOLDING)),
        ("date", f"le{format_instant(mine.start)}"),
    ]
    for found in appointments(context, pairs):
        if not found.get("end"):
            continue
        dosing = booking(found, None, base, strict=False)
        if in_session(context, mine, dosing, mine.patient):
            return True
    return False
