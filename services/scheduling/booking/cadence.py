"""The course's cadence: no more dosing sessions in a week of the course than its phase
allows (e.g. intranasal esketamine twice weekly in weeks 1-4, weekly in weeks 5-8)."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

from shared.fhir.errors import FHIRError

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

    from services.scheduling.dosing.protocol import Protocol
    from services.scheduling.dosing.protocol_parts import Phase

CADENCE_RULE = "dosing-course-cadence"


def _phase(protocol: Protocol, week: int) -> Phase | None:
    for phase in protocol.course:
        if phase.from_week <= week and (phase.to_week is None or week <= phase.to_week):
            return phase
    return None


def _monday(at: datetime, zone: ZoneInfo) -> date:
    """The Monday of the clinic-local calendar week of the naive-UTC instant `at`."""
    day = at.replace(tzinfo=UTC).astimezone(zone).date()
    return day - timedelta(days=day.weekday())


def check_cadence(
    protocol: Protocol, start: datetime, others: list[datetime], zone: ZoneInfo
) -> None:
    """409 when the session at `start` makes its week (or block of weeks, for fewer than one
    a week) of the course hold more sessions than the phase's perWeekMax. Minimums are the
    planner's, not a booking's.

    Weeks are calendar weeks (Monday to Sunday) on the clinic's wall clock (`zone`): week 1
    is the week of the course's first dosing session. The protocol's "twice weekly" is a
    clinic calendar notion (Monday and Thursday, then Monday again), not 168 h periods from
    the first dose's exact start: those would put next Monday at 09:00 in week 1 after a
    first dose on Monday at 10:00, or after a change to summer time."""
    first = _monday(min([start, *others]), zone)

    def week(at: datetime) -> int:
        return (_monday(at, zone) - first).days // 7 + 1

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
