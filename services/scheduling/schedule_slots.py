"""The live slots of a schedule (entered-in-error ones aside): finding them, and whether a
new slot overlaps one."""

from __future__ import annotations

from bisect import bisect_left
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared.fhir.dates import date_range, format_instant

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from shared.fhir.interactions import Interactions
    from shared.fhir.operations import OperationCall

Period = tuple[datetime, datetime]


def instant(value: str) -> datetime:
    """A FHIR instant as a naive-UTC datetime (validation has checked its form)."""
    return date_range(value)[0]


def schedule_lock_key(schedule_id: str) -> str:
    """The lock that serialises writers of one schedule's slots."""
    return f"slots-of:Schedule/{schedule_id}"


def latest_before(
    session: Session, interactions: Interactions, schedule_id: str, end: datetime, skip: str
) -> dict[str, Any] | None:
    """The live slot of the schedule that starts last before `end` (not `skip`). Because a
    schedule's live slots never overlap, no other slot starting before `end` ends later."""
    found = interactions.search(
        session,
        "Slot",
        [
            ("schedule", f"Schedule/{schedule_id}"),
            ("start", f"lt{format_instant(end)}"),
            ("status:not", "entered-in-error"),
            ("_sort", "-start"),
            ("_count", "2"),
            ("_total", "none"),
        ],
        strict=True,
    )
    others = [slot for slot in found.resources if slot.get("id") != skip]
    return others[0] if others else None


def live_slots(call: OperationCall, schedule_id: str, window: Period) -> list[Period]:
    """The schedule's live slots that may overlap `window`, sorted by start."""
    base = [
        ("schedule", f"Schedule/{schedule_id}"),
        ("status:not", "entered-in-error"),
        ("start", f"ge{format_instant(window[0])}"),
        ("start", f"lt{format_instant(window[1])}"),
        ("_sort", "start"),
        ("_total", "none"),
    ]
    page = call.interactions.settings.max_page_size
    found: list[dict[str, Any]] = []
    while True:
        pairs = [*base, ("_count", str(page)), ("_offset", str(len(found)))]
        result = call.interactions.search(call.session, "Slot", pairs, strict=True)
        found += result.resources
        if not result.query.more:
            break
    earlier = latest_before(call.session, call.interactions, schedule_id, window[0], skip="")
    slots = ([earlier] if earlier else []) + found
    return [(instant(slot["start"]), instant(slot["end"])) for slot in slots]


def overlaps(existing: list[Period], starts: list[datetime], slot: Period) -> bool:
    """Whether `slot` overlaps one of `existing` (sorted live slots; `starts` their starts)."""
    # Live slots never overlap, so the one starting last before our end ends last too.
    index = bisect_left(starts, slot[1]) - 1
    return index >= 0 and existing[index][1] > slot[0]
