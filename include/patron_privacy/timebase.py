"""The as-of instant and retention windows.

Every run is repeatable only if its notion of "now" comes from the run, never
from the wall clock: the DAG passes its data interval end, the CLI a date.
Koha (like most ILSs) stores naive local times, so instants are converted to
the library's time zone and compared as naive local datetimes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil.relativedelta import relativedelta

_DURATION = re.compile(
    r"^P(?!$)(?:(?P<years>\d+)Y)?(?:(?P<months>\d+)M)?(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?=\d)(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?)?$"
)


@dataclass(frozen=True)
class Window:
    """An ISO 8601 duration, kept as text for display and as calendar arithmetic."""

    text: str
    delta: relativedelta

    def cutoff(self, as_of: datetime) -> datetime:
        return as_of - self.delta

    def describe(self) -> str:
        d = self.delta
        parts = []
        for name, n in (
            ("year", d.years),
            ("month", d.months),
            ("day", d.days),
            ("hour", d.hours),
            ("minute", d.minutes),
        ):
            if n:
                parts.append(f"{n} {name}{'s' if n != 1 else ''}")
        return ", ".join(parts) or "immediately"


def parse_duration(text: str) -> Window:
    """Parse an ISO 8601 duration such as ``P30D``, ``P1Y`` or ``PT12H``."""
    if not isinstance(text, str):
        raise ValueError(f"expected an ISO 8601 duration such as P30D, got {text!r}")
    m = _DURATION.match(text.strip())
    if not m:
        raise ValueError(f"expected an ISO 8601 duration such as P30D or P1Y, got {text!r}")
    g = {k: int(v) if v else 0 for k, v in m.groupdict().items()}
    delta = relativedelta(
        years=g["years"],
        months=g["months"],
        days=g["days"] + 7 * g["weeks"],
        hours=g["hours"],
        minutes=g["minutes"],
    )
    return Window(text.strip(), delta)


def library_zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}") from None


def as_of_from_date(day: date | str, zone: str) -> datetime:
    """``--as-of 2026-11-30`` means midnight starting that day in the library's zone."""
    if isinstance(day, str):
        try:
            day = date.fromisoformat(day)
        except ValueError:
            raise ValueError(f"--as-of must be a date YYYY-MM-DD, got {day!r}") from None
    library_zone(zone)
    return datetime.combine(day, time.min)


def as_of_from_instant(instant: datetime, zone: str) -> datetime:
    """A timezone-aware instant (a DAG run's data interval end) as naive local time."""
    if instant.tzinfo is None:
        raise ValueError("the as-of instant must be timezone-aware")
    return instant.astimezone(library_zone(zone)).replace(tzinfo=None)
