"""Slots an Appointment books: a free Slot it fits in turns busy, and turns free again when
the appointment is cancelled, loses the slot or is deleted (each an update with its event)."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from services.scheduling.booking.participants import booked_as
from services.scheduling.booking.session import Booking
from services.scheduling.schedule_slots import instant
from shared.fhir.errors import FHIRError, invalid
from shared.fhir.references import parse_reference

if TYPE_CHECKING:
    from shared.fhir.rules import WriteContext

SLOT_RULE = "slot-must-be-free"
# Statuses in which the appointment keeps its slot (fulfilled: the time was used).
KEEPS_SLOT = ("pending", "booked", "arrived", "checked-in", "fulfilled")


def slot_ids(appointment: dict[str, Any] | None) -> list[str]:
    """The ids of the Slots the appointment names; 422 for a reference that is no Slot."""
    found = []
    for index, item in enumerate((appointment or {}).get("slot") or []):
        reference = (item or {}).get("reference") or ""
        res_type, res_id = parse_reference(reference)
        if res_type != "Slot" or res_id is None or "://" in reference:
            raise invalid(
                "Appointment.slot names a Slot of this service as Slot/<id>",
                [f"Appointment.slot[{index}]"],
            )
        found.append(res_id)
    return found


def held_slots(appointment: dict[str, Any] | None) -> list[str]:
    """The slots the appointment holds busy (none when it is cancelled or only proposed)."""
    if appointment is None or appointment.get("status") not in KEEPS_SLOT:
        return []
    with contextlib.suppress(FHIRError):
        return slot_ids(appointment)
    return []


def _set_status(context: WriteContext, slot: dict[str, Any], status: str) -> None:
    body = {**slot, "status": status}
    version = int(slot["meta"]["versionId"])
    context.interactions.update(context.session, "Slot", slot["id"], body, if_match=version)


def _read(context: WriteContext, slot_id: str, where: str) -> dict[str, Any] | None:
    with contextlib.suppress(FHIRError):
        return context.interactions.store.read(context.session, "Slot", slot_id).resource
    raise invalid(f"Slot/{slot_id} is not known", [where])


def _who(context: WriteContext, references: list[str]) -> set[str]:
    """The references and what they book (a PractitionerRole: also its Practitioner)."""
    found = set()
    for reference in references:
        res_type, res_id = parse_reference(reference)
        if res_type and res_id and "://" not in reference:
            found |= {f"{res_type}/{res_id}", booked_as(context, f"{res_type}/{res_id}")}
    return found


def _check_owner(
    context: WriteContext, slot: dict[str, Any], attending: set[str], where: str
) -> None:
    """422 unless the slot's Schedule has an actor among the appointment's participants."""
    reference = (slot.get("schedule") or {}).get("reference") or ""
    res_type, res_id = parse_reference(reference)
    schedule = None
    if res_type == "Schedule" and res_id:
        with contextlib.suppress(FHIRError):
            schedule = context.interactions.store.read(context.session, "Schedule", res_id)
    actors = [
        (actor or {}).get("reference") or ""
        for actor in ((schedule.resource or {}) if schedule else {}).get("actor") or []
    ]
    if not _who(context, actors) & attending:
        raise invalid(
            f"Slot/{slot.get('id')} is in the Schedule of {', '.join(actors) or 'no one'}, "
            "none of whom is a participant of the appointment",
            [where],
        )


def book_slots(
    context: WriteContext,
    mine: Booking,
    before: list[str],
    now: list[str],
    appointment: dict[str, Any] | None = None,
) -> None:
    """Mark the newly held slots busy (409 when one is not free, 422 when the appointment
    does not fit or a slot is in the Schedule of none of its participants) and free the
    ones given up (the caller holds the slots' locks)."""
    for slot_id in before:
        if slot_id in now:
            continue
        with contextlib.suppress(FHIRError):  # a slot deleted meanwhile needs no freeing
            slot = context.interactions.store.read(context.session, "Slot", slot_id).resource
            if slot is not None and slot.get("status") == "busy":
                _set_status(context, slot, "free")
    if not now:
        return
    slots = [_read(context, slot_id, f"Appointment.slot[{i}]") for i, slot_id in enumerate(now)]
    if mine.start is None or mine.end is None:
        raise invalid(
            "An Appointment booking a slot needs its start and end", ["Appointment.start"]
        )
    # Several slots are booked back to back: the appointment fits in their span.
    first = min(instant(slot["start"]) for slot in slots if slot)
    last = max(instant(slot["end"]) for slot in slots if slot)
    if not (first <= mine.start and mine.end <= last):
        raise invalid("The appointment does not fit in its slots", ["Appointment.slot"])
    attending = _who(
        context,
        [
            (p.get("actor") or {}).get("reference") or ""
            for p in (appointment or {}).get("participant") or []
            if p.get("status") != "declined"
        ],
    )
    for index, slot in enumerate(slots):
        if slot is not None:
            _check_owner(context, slot, attending, f"Appointment.slot[{index}]")
    for index, (slot_id, slot) in enumerate(zip(now, slots, strict=True)):
        if slot is None or slot_id in before:
            continue  # held already by this appointment
        if slot.get("status") != "free":
            raise FHIRError(
                409,
                f"Rule {SLOT_RULE}: Slot/{slot_id} is {slot.get('status')}, not free",
                code="business-rule",
                expression=[f"Appointment.slot[{index}]"],
            )
        _set_status(context, slot, "busy")
