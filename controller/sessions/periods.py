"""Energy per 15-minute billing period: pure, exact integer arithmetic.

Periods are aligned to the site's local wall clock (Europe/Oslo by default), because that is how the
operator prices them and how the per-hour electricity subsidy is computed. Every offset Europe/Oslo
has ever used since 1970 (+01:00, +02:00) is a whole number of hours and its changes happen on the
hour, so a local quarter-hour boundary is always a UTC quarter-hour boundary; the code does not rely
on that and aligns in local time anyway, which also holds for zones with :30 or :45 offsets. Period
starts are stored in UTC, so the repeated local hour of the autumn change gives eight distinct
periods, not four overlapping ones.

Energy is whole watt-hours: registers are rounded to the nearest Wh when they enter the ledger, and
the energy between two samples is split across the periods it spans in proportion to time, by
cumulative rounding on integers, so the parts add up exactly to the whole.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

PERIOD = timedelta(minutes=15)
_PERIOD_US = 15 * 60 * 1_000_000
DEFAULT_ZONE = ZoneInfo("Europe/Oslo")


def _us(delta: timedelta) -> int:
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def period_start(moment: datetime, zone: ZoneInfo = DEFAULT_ZONE) -> datetime:
    """Start (UTC) of the local quarter-hour that contains `moment` (timezone-aware)."""
    if moment.tzinfo is None:
        raise ValueError("period_start needs a timezone-aware datetime")
    offset = moment.astimezone(zone).utcoffset()
    assert offset is not None
    local_wall = moment.astimezone(UTC).replace(tzinfo=None) + offset
    since_midnight_us = _us(local_wall - local_wall.replace(hour=0, minute=0, second=0, microsecond=0))
    floored = local_wall - timedelta(microseconds=since_midnight_us % _PERIOD_US)
    # The offset is constant inside a quarter-hour, so the same offset takes the floor back to UTC.
    return (floored - offset).replace(tzinfo=UTC)


def split_energy(
    t0: datetime, t1: datetime, energy_wh: int, zone: ZoneInfo = DEFAULT_ZONE
) -> dict[datetime, int]:
    """Split `energy_wh` consumed between `t0` and `t1` over the periods the interval spans.

    Proportional to time; the parts are integers and sum exactly to `energy_wh`. An empty or
    backwards interval (clock jitter between a last sample and a stop) puts everything in the
    period of `t0`.
    """
    if energy_wh < 0:
        raise ValueError(f"energy must not be negative, got {energy_wh} Wh")
    if energy_wh == 0:
        return {}
    start = period_start(t0, zone)
    if t1 <= t0:
        return {start: energy_wh}
    total_us = _us(t1 - t0)
    parts: dict[datetime, int] = {}
    allocated = 0
    boundary = start
    while boundary < t1:
        # Every offset in use is a multiple of 15 minutes, so local quarter-hours are 15 UTC minutes.
        nxt = boundary + PERIOD
        elapsed_us = _us(min(nxt, t1) - t0)
        # Round half up on integers: cumulative, so the last part absorbs no drift.
        cumulative = (2 * energy_wh * elapsed_us + total_us) // (2 * total_us)
        if cumulative != allocated:
            parts[boundary] = cumulative - allocated
            allocated = cumulative
        boundary = nxt
    assert allocated == energy_wh
    return parts


def merge_periods(
    existing: Mapping[datetime, int], added: Mapping[datetime, int]
) -> tuple[tuple[datetime, int], ...]:
    """Add `added` to `existing`, sorted by period start."""
    merged = dict(existing)
    for start, wh in added.items():
        merged[start] = merged.get(start, 0) + wh
    return tuple(sorted(merged.items()))
