"""The plasticity window: four moments after the end of an administration, pure computation.

The offsets come from the dosing protocol; a patient's CarePlan may tailor any of them (with
a reason and the clinician who set it). All results are UTC.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime, timedelta

# The offsets' names as the extensions and Parameters carry them, in their required order.
OFFSET_NAMES = ("windowStart", "optimalStart", "optimalEnd", "windowEnd")


@dataclass(frozen=True)
class Offsets:
    """Hours from the end of the administration to each moment of the window."""

    start: float
    optimal_start: float
    optimal_end: float
    end: float

    def by_name(self) -> dict[str, float]:
        return dict(zip(OFFSET_NAMES, self.hours(), strict=True))

    def hours(self) -> tuple[float, float, float, float]:
        return (self.start, self.optimal_start, self.optimal_end, self.end)

    def problem(self) -> str | None:
        """Why these offsets cannot be a window (None when they can)."""
        start, optimal_start, optimal_end, end = self.hours()
        if start < 0:
            return "windowStart must not be before the end of the administration"
        if not start <= optimal_start <= optimal_end <= end:
            shown = ", ".join(f"{name} {hours:g} h" for name, hours in self.by_name().items())
            return (
                "the offsets must be ordered windowStart <= optimalStart <= optimalEnd "
                f"<= windowEnd ({shown})"
            )
        if end == start:
            return "windowEnd must be after windowStart"
        return None


@dataclass(frozen=True)
class Tailoring:
    """A patient's own offsets (any of the four; the others stay the protocol's)."""

    offsets: dict[str, float]
    reason: str
    author: str | None = None

    def applied_to(self, protocol_offsets: Offsets) -> Offsets:
        """The protocol's offsets with this tailoring's in their place; ValueError when the
        result is not an ordered window."""
        unknown = sorted(set(self.offsets) - set(OFFSET_NAMES))
        if unknown:
            raise ValueError(f"unknown offsets {unknown}")
        names = dict(zip(OFFSET_NAMES, (f.name for f in fields(Offsets)), strict=True))
        tailored = replace(
            protocol_offsets, **{names[name]: hours for name, hours in self.offsets.items()}
        )
        problem = tailored.problem()
        if problem:
            raise ValueError(problem)
        return tailored


@dataclass(frozen=True)
class Window:
    """The window in force after one administration, and the protocol that computed it."""

    window_start: datetime
    optimal_start: datetime
    optimal_end: datetime
    window_end: datetime
    protocol: str  # id|version

    def moments(self) -> dict[str, datetime]:
        return dict(
            zip(
                OFFSET_NAMES,
                (self.window_start, self.optimal_start, self.optimal_end, self.window_end),
                strict=True,
            )
        )


def compute_window(
    offsets: Offsets, protocol: str, ended: datetime, tailoring: Tailoring | None = None
) -> Window:
    """The window after an administration that ended at `ended` (an aware datetime)."""
    if ended.tzinfo is None or ended.utcoffset() is None:
        raise ValueError("the end of the administration needs a time zone")
    in_force = tailoring.applied_to(offsets) if tailoring is not None else offsets
    end_utc = ended.astimezone(UTC)
    start, optimal_start, optimal_end, end = (
        end_utc + timedelta(hours=hours) for hours in in_force.hours()
    )
    return Window(start, optimal_start, optimal_end, end, protocol)


def format_utc(moment: datetime) -> str:
    """A FHIR dateTime in UTC (e.g. 2026-03-01T11:40:00Z), fractions of a second kept."""
    spec = "microseconds" if moment.microsecond else "seconds"
    return moment.astimezone(UTC).isoformat(timespec=spec).replace("+00:00", "Z")
