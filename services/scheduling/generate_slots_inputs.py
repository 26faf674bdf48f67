"""The inputs of `Schedule/$generate-slots`, checked and turned into a SlotPlan."""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta

from services.scheduling.settings import SchedulingSettings
from services.scheduling.slot_plan import WEEKDAYS, WORKING_DAYS, SlotPlan
from shared.fhir.errors import invalid
from shared.fhir.operations import OperationCall

SLOT_STATUSES = ("free", "busy", "busy-unavailable", "busy-tentative")
_FULL_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _day(call: OperationCall, name: str) -> date:
    text = call.one(name)
    try:
        if not _FULL_DATE.fullmatch(text):
            raise ValueError
        return date.fromisoformat(text)
    except ValueError:
        raise invalid(f"'{name}' must be a full date (YYYY-MM-DD)", [name]) from None


def _time(call: OperationCall, name: str, default: str) -> time:
    text = call.one(name, default)
    try:
        return time.fromisoformat(text)
    except ValueError:
        raise invalid(f"'{name}' is not a time of day", [name]) from None


def _weekdays(call: OperationCall) -> frozenset[int]:
    codes = call.inputs.get("weekday") or list(WORKING_DAYS)
    unknown = [code for code in codes if code not in WEEKDAYS]
    if unknown:
        raise invalid(f"'weekday' must be one of {', '.join(WEEKDAYS)}", ["weekday"])
    return frozenset(WEEKDAYS.index(code) for code in codes)


def slot_status(call: OperationCall) -> str:
    """The status the generated slots get (free unless told)."""
    status: str = call.one("status", "free")
    if status not in SLOT_STATUSES:
        raise invalid(f"'status' must be one of {', '.join(SLOT_STATUSES)}", ["status"])
    return status


def slot_plan(call: OperationCall, settings: SchedulingSettings) -> SlotPlan:
    """The plan the inputs describe; 422 naming the input at fault or over a limit."""
    first, last = _day(call, "start"), _day(call, "end")
    if last < first:
        raise invalid("'end' (the last day, inclusive) is before 'start'", ["end"])
    days = (last - first).days + 1
    if days > settings.generate_max_days:
        raise invalid(
            f"The period covers {days} days; one call covers at most "
            f"{settings.generate_max_days} (SCHEDULING_GENERATE_MAX_DAYS)",
            ["end"],
        )
    minutes: int = call.one("slotMinutes")
    if not 0 < minutes <= 24 * 60:
        raise invalid("'slotMinutes' must be from 1 to 1440", ["slotMinutes"])
    day_start, day_end = _time(call, "dayStart", "09:00:00"), _time(call, "dayEnd", "17:00:00")
    if not day_start < day_end:
        raise invalid("'dayEnd' must be after 'dayStart' (on the same day)", ["dayEnd"])
    return SlotPlan(
        first_day=first,
        last_day=last,
        length=timedelta(minutes=minutes),
        weekdays=_weekdays(call),
        day_start=day_start,
        day_end=day_end,
        zone=settings.clinic_zone(),
    )


def counted(plan: SlotPlan, settings: SchedulingSettings) -> list[tuple[datetime, datetime]]:
    """The plan's slots; 422 naming slotMinutes when there are more than the limit."""
    slots: list[tuple[datetime, datetime]] = []
    for slot in plan.slots():
        slots.append(slot)
        if len(slots) > settings.generate_max_slots:
            raise invalid(
                f"The period holds more than {settings.generate_max_slots} slots "
                "(SCHEDULING_GENERATE_MAX_SLOTS): shorten it or lengthen 'slotMinutes'",
                ["slotMinutes"],
            )
    return slots
