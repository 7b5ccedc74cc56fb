"""When each vendor's meter sends which list: a pure function of the wall clock.

Emission instants are multiples of the vendor's periods counted from the Unix epoch. Europe/Oslo
is a whole number of hours from UTC, so these are the same multiples of Oslo wall-clock time: a
2.5 s Aidon sends at hh:mm:00.0, :02.5, :05.0, ... and its hourly list at hh:00:10 Oslo time.
Arithmetic is in integer milliseconds so that 2.5 s periods never drift.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from .model import ListType, Vendor
from .vendors import SPECS

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_HOUR_MS = 3_600_000


@dataclass(frozen=True)
class Slot:
    utc: datetime
    list_type: ListType


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _tick_ms(vendor: Vendor) -> int:
    spec = SPECS[vendor]
    periods = [_ms(spec.full_period_s), _ms(spec.hourly_offset_s)]
    if spec.power_period_s is not None:
        periods.append(_ms(spec.power_period_s))
    return math.gcd(*periods)


def list_at(vendor: Vendor, posix_ms: int) -> ListType | None:
    """The list a meter sends at this instant, or None when it sends nothing."""
    spec = SPECS[vendor]
    if posix_ms % _HOUR_MS == _ms(spec.hourly_offset_s):
        return ListType.HOURLY
    if posix_ms % _ms(spec.full_period_s) == 0:
        return ListType.FULL
    if spec.power_period_s is not None and posix_ms % _ms(spec.power_period_s) == 0:
        return ListType.POWER
    return None


def next_slot(vendor: Vendor, after_utc: datetime) -> Slot:
    """The first emission strictly after `after_utc`."""
    tick = _tick_ms(vendor)
    now_ms = (after_utc - _EPOCH) // _MS
    candidate = (now_ms // tick + 1) * tick
    while True:
        list_type = list_at(vendor, candidate)
        if list_type is not None:
            return Slot(_EPOCH + candidate * _MS, list_type)
        candidate += tick


def slots_between(vendor: Vendor, start_utc: datetime, end_utc: datetime) -> list[Slot]:
    """Every emission in (start_utc, end_utc]."""
    slots = []
    slot = next_slot(vendor, start_utc)
    while slot.utc <= end_utc:
        slots.append(slot)
        slot = next_slot(vendor, slot.utc)
    return slots
