"""Per-vendor facts that are not list layout: HDLC header, invoke id, date-time conventions, cadence.

Header bytes, invoke ids and date-time fields are as every published capture of the vendor shows
them. Cadences: Aidon sends list 1 every 2.5 s and list 2 every 10 s, Kaifa 2 s and 10 s (both
from their HAN descriptions, and captures are aligned to those multiples of wall-clock time);
Kamstrup sends its full list every 10 s; Landis+Gyr (E350, EMBRIQ list) was chosen like Aidon,
2.5 s and 10 s, which is what the one published telnet log of it shows (three list 1 frames
between list 2 frames 10 s apart). The hourly list goes out at hh:00:10 in place of that second's
full list, for every vendor (real meters vary between hh:00:00 and hh:00:55).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from .cosem_time import DEVIATION_NOT_SPECIFIED
from .model import Vendor


class DateTimeField(Enum):
    """How the Data-Notification header carries its date-time."""

    ABSENT = b"\x00"
    LENGTH_PREFIXED = b"\x0c"
    TAGGED = b"\x09\x0c"


@dataclass(frozen=True)
class VendorSpec:
    dest: bytes
    src: bytes
    control: int
    invoke_id: int
    date_time_field: DateTimeField
    sunday_is_zero: bool
    deviation_min: int
    flags_daylight_saving: bool
    # The hourly list's clock names the hour its registers were frozen at (hh:00:00), not the
    # moment it is sent.
    hourly_clock_at_hour: bool
    power_period_s: float | None
    full_period_s: float = 10.0
    hourly_offset_s: float = 10.0


SPECS: dict[Vendor, VendorSpec] = {
    Vendor.AIDON: VendorSpec(
        dest=b"\x41",
        src=b"\x08\x83",
        control=0x13,
        invoke_id=0x40000000,
        date_time_field=DateTimeField.ABSENT,
        sunday_is_zero=True,
        deviation_min=0,
        flags_daylight_saving=False,
        hourly_clock_at_hour=True,
        power_period_s=2.5,
    ),
    Vendor.KAIFA: VendorSpec(
        dest=b"\x01",
        src=b"\x02\x01",
        control=0x10,
        invoke_id=0x40000000,
        date_time_field=DateTimeField.TAGGED,
        sunday_is_zero=False,
        deviation_min=DEVIATION_NOT_SPECIFIED,
        flags_daylight_saving=False,
        hourly_clock_at_hour=False,
        power_period_s=2.0,
    ),
    Vendor.KAMSTRUP: VendorSpec(
        dest=b"\x2b",
        src=b"\x21",
        control=0x13,
        invoke_id=0x00000000,
        date_time_field=DateTimeField.LENGTH_PREFIXED,
        sunday_is_zero=False,
        deviation_min=DEVIATION_NOT_SPECIFIED,
        flags_daylight_saving=True,
        hourly_clock_at_hour=False,
        power_period_s=None,
    ),
    # The E350's HDLC header and APDU header are byte for byte Aidon's; its clock conventions are
    # taken to be Aidon's too (no hourly list of it has been published).
    Vendor.LANDIS_GYR: VendorSpec(
        dest=b"\x41",
        src=b"\x08\x83",
        control=0x13,
        invoke_id=0x40000000,
        date_time_field=DateTimeField.ABSENT,
        sunday_is_zero=True,
        deviation_min=0,
        flags_daylight_saving=False,
        hourly_clock_at_hour=True,
        power_period_s=2.5,
    ),
}
