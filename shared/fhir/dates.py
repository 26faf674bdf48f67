"""FHIR date, dateTime and instant values as the UTC ranges they cover."""

from __future__ import annotations

import calendar
import re
from datetime import UTC, datetime, timedelta

_DATE = re.compile(
    r"^(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?:\.(?P<f>\d+))?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)

MIN = datetime(1, 1, 1)
MAX = datetime(9999, 12, 31, 23, 59, 59, 999999)


class DateFormatError(ValueError):
    """A value that is not a FHIR date, dateTime or instant."""


def date_range(value: str) -> tuple[datetime, datetime]:
    """Return the inclusive naive-UTC range a (possibly partial) FHIR date covers."""
    match = _DATE.match(value.strip())
    if not match:
        raise DateFormatError(f"'{value}' is not a FHIR date or dateTime")
    parts = match.groupdict()
    try:
        year = int(parts["y"])
        if parts["m"] is None:
            return datetime(year, 1, 1), datetime(year, 12, 31, 23, 59, 59, 999999)
        month = int(parts["m"])
        if parts["d"] is None:
            last = calendar.monthrange(year, month)[1]
            return datetime(year, month, 1), datetime(year, month, last, 23, 59, 59, 999999)
        day = int(parts["d"])
        if parts["H"] is None:
            start = datetime(year, month, day)
            return start, start + (timedelta(days=1) - timedelta(microseconds=1))
        hour, minute = int(parts["H"]), int(parts["M"])
        tz = parts["tz"]
        offset = timedelta(0)
        if tz and tz != "Z":
            sign = 1 if tz[0] == "+" else -1
            offset = sign * timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6]))
        if parts["S"] is None:
            start = datetime(year, month, day, hour, minute)
            width = timedelta(minutes=1)
        elif parts["f"] is None:
            start = datetime(year, month, day, hour, minute, int(parts["S"]))
            width = timedelta(seconds=1)
        else:
            digits = parts["f"][:6]
            start = datetime(
                year, month, day, hour, minute, int(parts["S"]), int(digits.ljust(6, "0"))
            )
            width = timedelta(microseconds=10 ** (6 - len(digits)))
        end = start + (width - timedelta(microseconds=1))
        return _clamped(start, -offset), _clamped(end, -offset)
    except (ValueError, OverflowError) as exc:
        raise DateFormatError(f"'{value}' is not a valid date: {exc}") from None


def _clamped(moment: datetime, by: timedelta) -> datetime:
    """moment + by, clamped to [MIN, MAX] at the ends of the calendar."""
    try:
        return moment + by
    except OverflowError:
        return MAX if by > timedelta(0) else MIN


def format_instant(moment: datetime) -> str:
    """Render a naive-UTC datetime as a FHIR instant."""
    return moment.isoformat(timespec="microseconds") + "Z"


def utcnow() -> datetime:
    """The current time as a naive-UTC datetime, the form stored in the database."""
    return datetime.now(UTC).replace(tzinfo=None)


def http_date(moment: datetime) -> str:
    """Render a naive-UTC datetime for the Last-Modified header."""
    return moment.replace(tzinfo=UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")
