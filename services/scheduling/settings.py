"""Scheduling's settings: the shared ones plus the clinic's time zone."""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator

from shared.settings import settings_class

_SchedulingBase = settings_class("scheduling", 8002)


class SchedulingSettings(_SchedulingBase):  # type: ignore[misc,valid-type]
    """`SCHEDULING_*` settings."""

    # The IANA zone of the clinic's wall clock (SCHEDULING_CLINIC_TIME_ZONE): `$generate-slots`
    # reads working hours in it; slots are stored as UTC instants.
    clinic_time_zone: str = "Europe/Amsterdam"
    # One `$generate-slots` call covers at most this many days and creates at most this many
    # slots (a year of half-hour slots in working hours is about 4,200).
    generate_max_days: int = Field(default=400, ge=1)
    generate_max_slots: int = Field(default=10_000, ge=1)
    # How long `$hold` keeps a pending Appointment's time (SCHEDULING_HOLD_MINUTES); 0 makes
    # holds lapse at once (tests).
    hold_minutes: int = Field(default=10, ge=0)
    # How often the hold sweeper cancels lapsed holds, giving their slots back to `$find`
    # (SCHEDULING_HOLD_SWEEP_INTERVAL_S); 0 runs no sweeper.
    hold_sweep_interval_s: float = Field(default=30.0, ge=0)

    @field_validator("clinic_time_zone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        # Checked here so that a wrong zone stops the start, not the first generation (a
        # directory such as "Europe" is an OSError).
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise ValueError(
                f"{name!r} is not a time zone of the tz database (e.g. Europe/Amsterdam)"
            ) from None
        return name

    def clinic_zone(self) -> ZoneInfo:
        """The clinic's time zone."""
        return ZoneInfo(self.clinic_time_zone)
