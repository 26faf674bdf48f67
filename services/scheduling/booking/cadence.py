"""The course's cadence: no more dosing sessions in a week of the course than its phase
allows (e.g. intranasal esketamine twice weekly in weeks 1-4, weekly in weeks 5-8)."""

from __future__ import annotations

import math
from datetime import datetime
from typing import TYPE_CHECKING

from shared.fhir.errors import FHIRError

if TYPE_CHECKING:
    from services.scheduling.dosing.protocol import Protocol
    from services.scheduling.dosing.protocol_parts import Phase

CADENCE_RULE = "dosing-course-cadence"


def _phase(protocol: Protocol, week: int) -> Phase | None:
    for phase in protocol.course:
        if phase.from_week <= week and (phase.to_week is None or week <= phase.to_week):
            return phase
    return None


def check_cadence(protocol: Protocol, start: datetime, others: list[datetime]) -> None:
    """409 when the session at `start` makes its week (or block of weeks, for fewer than one
    a week) of the course hold more sessions than the phase's perWeekMax. The course's week 1
    begins with its first dosing session; minimums are the planner's, not a booking's."""
    first = min([start, *others])

    def week(at: datetime) -> int:
        return (at - first).days // 7 + 1

    phase = _phase(protocol, week(start))
    if phase is None:
        return
    # 0.5 a week is one session in a block of two weeks, counted from the phase's start.
    weeks = 1 if phase.per_week_max >= 1 else math.ceil(1 / phase.per_week_max)
    allowed = math.floor(phase.per_week_max * weeks)

    def block(at: datetime) -> int:
        return (week(at) - phase.from_week) // weeks

    mine = block(start)
    same = [at for at in others if week(at) >= phase.from_week and block(at) == mine]
    if len(same) + 1 > allowed:
        shown = "week" if weeks == 1 else f"{weeks} weeks"
        raise FHIRError(
            409,
            f"Rule {CADENCE_RULE}: protocol {protocol.id} allows {allowed} dosing session(s) a "
            f"{shown} in week {week(start)} of the course; {len(same)} are booked already",
            code="business-rule",
            expression=["Appointment.start"],
        )
