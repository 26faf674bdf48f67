"""Slot write rules: a slot ends after it starts, its schedule exists, and the slots of one
schedule never overlap (entered-in-error slots aside)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from services.scheduling.schedule_slots import instant, latest_before, schedule_lock_key
from shared.fhir.errors import FHIRError, invalid
from shared.fhir.references import parse_reference

if TYPE_CHECKING:
    from shared.fhir.rules import WriteContext

OVERLAP_RULE = "slot-no-overlap"
# Set while $generate-slots writes slots it has checked against the schedule as a whole.
_checked_in_bulk: ContextVar[bool] = ContextVar("slots_checked_in_bulk", default=False)


@contextmanager
def checked_in_bulk() -> Iterator[None]:
    """Writes in this block skip the per-slot overlap search: the caller holds the schedule
    lock and has checked every slot it writes."""
    token = _checked_in_bulk.set(True)
    try:
        yield
    finally:
        _checked_in_bulk.reset(token)


def schedule_id_of(slot: dict[str, Any]) -> str:
    """The id of the Schedule a Slot names as `Schedule/<id>`; 422 naming Slot.schedule."""
    reference = (slot.get("schedule") or {}).get("reference") or ""
    res_type, res_id = parse_reference(reference)
    if res_type != "Schedule" or res_id is None or "://" in reference:
        raise invalid(
            "Slot.schedule must reference a Schedule of this service as Schedule/<id>",
            ["Slot.schedule"],
        )
    return res_id


def overlap_error(slot_id: str | None, schedule_id: str) -> FHIRError:
    """409 naming the overlap rule and the slot in the way."""
    return FHIRError(
        409,
        f"Rule {OVERLAP_RULE}: the slot overlaps Slot/{slot_id} of Schedule/{schedule_id}; "
        "the slots of one schedule may not overlap",
        code="business-rule",
        expression=["Slot.start", "Slot.end"],
    )


def check_slot(context: WriteContext) -> None:
    """Write rule: Slot.start < Slot.end (422), a stored Schedule (422), no overlap (409)."""
    slot = context.resource
    if slot is None:
        return
    start, end = instant(slot["start"]), instant(slot["end"])
    if not start < end:
        raise invalid("Slot.end must be after Slot.start", ["Slot.end"])
    schedule_id = schedule_id_of(slot)
    if _checked_in_bulk.get():
        return  # the generator read the schedule and holds its lock
    if not context.interactions.store.exists(context.session, "Schedule", schedule_id):
        raise invalid(f"Slot.schedule: Schedule/{schedule_id} is not known", ["Slot.schedule"])
    if slot.get("status") == "entered-in-error":
        return
    previous = context.previous.resource if context.previous is not None else None
    if (
        previous is not None
        and previous.get("status") != "entered-in-error"
        and all(previous.get(k) == slot.get(k) for k in ("start", "end", "schedule"))
    ):
        # Booking turns a slot busy or free: its times did not move, so it overlaps nothing
        # it did not before (the search below costs more the longer the schedule).
        return
    # Two concurrent writers would each miss the other's uncommitted slot: one at a time.
    context.interactions.store.database.lock(context.session, schedule_lock_key(schedule_id))
    before = latest_before(
        context.session, context.interactions, schedule_id, end, context.res_id or ""
    )
    if before is not None and instant(before["end"]) > start:
        raise overlap_error(before.get("id"), schedule_id)
