"""`POST [base]/Schedule/{id}/$generate-slots`: a period's slots in one call.

Every slot is created through Interactions (history, search index, outbox event as any
other). The schedule's lock is held throughout and its existing slots are read once, so
the per-slot overlap search of the Slot rule is not repeated for each new slot.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from services.scheduling.generate_slots_inputs import counted, slot_plan, slot_status
from services.scheduling.schedule_slots import Period, live_slots, overlaps, schedule_lock_key
from services.scheduling.settings import SchedulingSettings
from services.scheduling.slot_rules import checked_in_bulk
from shared.fhir.errors import invalid
from shared.fhir.operations import Operation, OperationCall, OperationParam, OperationResult

_OUTCOMES = ("created", "skipped", "overlapping")


def _instant(moment: datetime) -> str:
    """A naive-UTC moment as a FHIR instant to the second (slots start on whole minutes)."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _write(call: OperationCall, schedule: dict[str, Any], planned: list[Period]) -> Counter[str]:
    """Create the planned slots that are free to take; count each outcome."""
    counts: Counter[str] = Counter()
    call.interactions.store.database.lock(call.session, schedule_lock_key(schedule["id"]))
    existing = live_slots(call, schedule["id"], (planned[0][0], planned[-1][1]))
    starts = [start for start, _ in existing]
    taken = set(starts)
    template = {
        "resourceType": "Slot",
        "schedule": {"reference": f"Schedule/{schedule['id']}"},
        # What the schedule offers, so that a search by service type finds its slots.
        **{k: v for k, v in schedule.items() if k in ("serviceType", "specialty")},
        "status": slot_status(call),
    }
    with checked_in_bulk():
        for slot in planned:
            if slot[0] in taken:
                counts["skipped"] += 1
            elif overlaps(existing, starts, slot):
                counts["overlapping"] += 1
            else:
                body = {**template, "start": _instant(slot[0]), "end": _instant(slot[1])}
                call.interactions.create(call.session, "Slot", body)
                counts["created"] += 1
    return counts


def _generate(call: OperationCall) -> OperationResult:
    settings = call.interactions.settings
    assert isinstance(settings, SchedulingSettings)  # create_app makes sure of it
    plan = slot_plan(call, settings)
    slot_status(call)  # refused before anything is read
    stored = call.interactions.read(call.session, "Schedule", call.res_id or "").stored
    assert stored is not None
    if stored.resource.get("active") is False:
        raise invalid("The Schedule is not active: no slots are generated", ["Schedule.active"])
    planned = counted(plan, settings)
    counts = _write(call, stored.resource, planned) if planned else Counter()
    return OperationResult(
        {
            "resourceType": "Parameters",
            "parameter": [{"name": k, "valueInteger": counts[k]} for k in _OUTCOMES],
        }
    )


def generate_slots_operation() -> Operation:
    """The `Schedule/$generate-slots` operation of the scheduling service."""
    return Operation(
        name="generate-slots",
        levels=frozenset({"instance"}),
        methods=frozenset({"POST"}),
        affects_state=True,
        handler=_generate,
        description=(
            "Create the Slots of a period in this Schedule: on the given weekdays, from "
            "dayStart to dayEnd on the clinic's wall clock (SCHEDULING_CLINIC_TIME_ZONE), "
            "stored as UTC instants. Each slot copies the Schedule's serviceType and "
            "specialty. A slot whose start is already taken, or that would overlap an "
            "existing slot, is left out and counted; nothing is ever duplicated."
        ),
        # It reads the Schedule and searches and creates Slots.
        scope="system/Slot.cs",
        inputs=(
            OperationParam("start", "date", min=1, documentation="The first day (YYYY-MM-DD)"),
            OperationParam(
                "end", "date", min=1, documentation="The last day, inclusive (YYYY-MM-DD)"
            ),
            OperationParam("slotMinutes", "positiveInt", min=1, documentation="Slot length"),
            OperationParam(
                "weekday",
                "code",
                max="*",
                documentation="mon | tue | wed | thu | fri | sat | sun (default mon-fri)",
            ),
            OperationParam("dayStart", "time", documentation="Local start of day (09:00:00)"),
            OperationParam("dayEnd", "time", documentation="Local end of day (17:00:00)"),
            OperationParam(
                "status", "code", documentation="free (default) | busy | busy-unavailable ..."
            ),
        ),
        outputs=(
            OperationParam("created", "integer", min=1, documentation="Slots created"),
            OperationParam(
                "skipped", "integer", min=1, documentation="Left out: a slot starts there already"
            ),
            OperationParam(
                "overlapping",
                "integer",
                min=1,
                documentation="Left out: it would overlap an existing slot",
            ),
        ),
    )
