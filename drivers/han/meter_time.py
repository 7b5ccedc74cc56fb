"""COSEM date-time (12 bytes) to a timezone-aware datetime in the meter's wall-clock zone."""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

METER_TIMEZONE = ZoneInfo("Europe/Oslo")

_DEVIATION_UNSPECIFIED = -0x8000
_STATUS_UNSPECIFIED = 0xFF
_STATUS_DAYLIGHT_SAVING = 0x80


def cosem_datetime(raw: bytes, tz: tzinfo = METER_TIMEZONE) -> datetime | None:
    """The wall-clock time the meter states, in `tz`; None when a field is unspecified or invalid.

    The meter's deviation and status bytes are unreliable across vendors (Aidon sends deviation 0
    and status 0 in summer), so they only choose between the two instants of the repeated hour in
    autumn: a deviation that matches one of the two offsets wins, else the daylight-saving bit when
    the deviation is unspecified, else the first (summer-time) instant.
    """
    if len(raw) != 12:
        return None
    year = (raw[0] << 8) | raw[1]
    month, day, hour, minute, second, hundredths = raw[2], raw[3], raw[5], raw[6], raw[7], raw[8]
    if year == 0xFFFF or 0xFF in (month, day, hour, minute, second):
        return None
    microsecond = hundredths * 10_000 if hundredths < 100 else 0
    try:
        naive = datetime(year, month, day, hour, minute, second, microsecond)
    except ValueError:
        return None
    first = naive.replace(tzinfo=tz)
    second_instant = naive.replace(tzinfo=tz, fold=1)
    if first.utcoffset() == second_instant.utcoffset():
        return first
    deviation = int.from_bytes(raw[9:11], "big", signed=True)
    status = raw[11]
    if deviation != _DEVIATION_UNSPECIFIED:
        # COSEM deviation: minutes from local time to UTC, so the UTC offset is its negation.
        offset = timedelta(minutes=-deviation)
        if second_instant.utcoffset() == offset:
            return second_instant
        return first
    if status != _STATUS_UNSPECIFIED and not status & _STATUS_DAYLIGHT_SAVING:
        return second_instant
    return first
