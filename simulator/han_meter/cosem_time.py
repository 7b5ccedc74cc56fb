"""COSEM date-time (12 bytes) from a Europe/Oslo wall-clock time.

    year(2) month day day-of-week hour minute second hundredths deviation(2, signed) clock-status

Vendors fill day-of-week, deviation and status differently; the caller passes what its vendor does.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

OSLO = ZoneInfo("Europe/Oslo")

DEVIATION_NOT_SPECIFIED = -0x8000
HUNDREDTHS_NOT_SPECIFIED = 0xFF
STATUS_DAYLIGHT_SAVING = 0x80


def oslo_wall_clock(when: datetime) -> datetime:
    """An aware time in Europe/Oslo; a naive time is taken as Oslo wall-clock time already."""
    if when.tzinfo is None:
        return when.replace(tzinfo=OSLO)
    return when.astimezone(OSLO)


def is_daylight_saving(local: datetime) -> bool:
    dst = oslo_wall_clock(local).dst()
    return dst is not None and dst.total_seconds() != 0


def cosem_date_time(
    local: datetime,
    *,
    sunday_is_zero: bool,
    deviation_min: int,
    status: int,
    hundredths: int = HUNDREDTHS_NOT_SPECIFIED,
    day_of_week: int | None = None,
) -> bytes:
    wall = oslo_wall_clock(local)
    if day_of_week is not None:
        weekday = day_of_week
    else:
        weekday = wall.isoweekday() % 7 if sunday_is_zero else wall.isoweekday()
    return (
        wall.year.to_bytes(2, "big")
        + bytes((wall.month, wall.day, weekday, wall.hour, wall.minute, wall.second, hundredths))
        + deviation_min.to_bytes(2, "big", signed=True)
        + bytes((status,))
    )
