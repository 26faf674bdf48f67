"""Which slots a period of working days holds, from wall-clock hours in the clinic's zone."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
WORKING_DAYS = WEEKDAYS[:5]


@dataclass(frozen=True)
class SlotPlan:
    """Slots of `length` from `day_start` to `day_end` (local) on `weekdays`, first to last
    day inclusive."""

    first_day: date
    last_day: date
    length: timedelta
    weekdays: frozenset[int]  # date.weekday(): 0 is Monday
    day_start: time
    day_end: time
    zone: ZoneInfo

    def days(self) -> Iterator[date]:
        day = self.first_day
        while day <= self.last_day:
            if day.weekday() in self.weekdays:
                yield day
            day += timedelta(days=1)

    def utc(self, day: date, moment: time) -> datetime:
        """A local wall-clock time as naive UTC (a time skipped by a clock change is read
        with the offset before the change, as zoneinfo does with fold=0)."""
        local = datetime.combine(day, moment, tzinfo=self.zone)
        return local.astimezone(UTC).replace(tzinfo=None)

    def slots(self) -> Iterator[tuple[datetime, datetime]]:
        """(start, end) of each slot in naive UTC, in time order.

        Each day's hours are cut in elapsed time from the local start, so a slot lasts
        `length` even on a night the clocks change; a slot that would end after the local
        end of the day is left out.
        """
        for day in self.days():
            start, close = self.utc(day, self.day_start), self.utc(day, self.day_end)
            while start + self.length <= close:
                yield start, start + self.length
                start += self.length
