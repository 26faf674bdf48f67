"""The Appointment write rule: session type, slots, no double-booking and dosing sessions."""

from __future__ import annotations

from typing import TYPE_CHECKING

from services.scheduling.booking.dosing import check_dosing
from services.scheduling.booking.overlap import check_overlap
from services.scheduling.booking.participants import booked_as
from services.scheduling.booking.session import UNTIMED, booking
from services.scheduling.booking.slots import KEEPS_SLOT, book_slots, held_slots, slot_ids
from shared.fhir.errors import invalid

if TYPE_CHECKING:
    from shared.fhir.rules import WriteContext


def lock(context: WriteContext, references: set[str]) -> None:
    """Serialise the writers booking any of `references`, locked in sorted order so that
    two writers never each wait for the other."""
    database = context.interactions.store.database
    for reference in sorted(references):
        database.lock(context.session, f"booking-of:{reference}")


def check_appointment(context: WriteContext) -> None:
    """Write rule: 422 for an unknown session type or a malformed or missing period; then,
    holding the participants' and slots' locks, the slot and overlap rules (409 or 422), and
    the dosing rules for a dosing session entering a status in which it takes place (or
    moved or given to another patient in one)."""
    appointment = context.resource
    previous = context.previous.resource if context.previous is not None else None
    before = held_slots(previous)
    base = context.interactions.settings.canonical_base
    if appointment is None:  # a deleted appointment gives its slots back
        lock(context, {f"Slot/{s}" for s in before})
        book_slots(context, booking(previous or {}, context.res_id, base, strict=False), before, [])
        return
    mine = booking(appointment, context.res_id, base)
    if (mine.start is None or mine.end is None) and mine.status not in UNTIMED:
        # FHIR R4 app-3.
        raise invalid(
            "Only proposed, cancelled or waitlist appointments can be missing start/end dates",
            ["Appointment.start", "Appointment.end"],
        )
    if mine.start is not None and mine.end is not None and not mine.start < mine.end:
        raise invalid("Appointment.end must be after Appointment.start", ["Appointment.end"])
    now = slot_ids(appointment) if appointment.get("status") in KEEPS_SLOT else []
    # Two writers booking one person, room or slot would each miss the other's uncommitted
    # appointment: one at a time (a PractitionerRole locks its Practitioner).
    actors = {booked_as(context, ref) for _, ref in mine.actors} if mine.holds_time else set()
    lock(context, actors | {f"Slot/{s}" for s in (*before, *now)})
    book_slots(context, mine, before, now, appointment)
    if mine.holds_time:
        check_overlap(context, mine)
    if mine.session_type == "dosing":
        earlier = booking(previous, context.res_id, base, strict=False) if previous else None
        if mine.entered(earlier):
            check_dosing(context, mine)
