"""A MeterReading as the JSON record of `sitectl han decode` (DESIGN.md section 7.1).

Keys are those of `expected` in ../shared/data/han/frames.jsonl, plus `vendor` (display name) and
`list`. `timestamp` is the naive wall-clock time the meter states. Values the meter did not send
are left out, never written as 0.
"""

from __future__ import annotations

from drivers.contracts import MeterReading
from drivers.han.lists import DISPLAY_NAMES

RECORD_FIELDS = (
    "list_version",
    "meter_id",
    "meter_model",
    "active_power_import_w",
    "active_power_export_w",
    "reactive_power_import_var",
    "reactive_power_export_var",
    "current_l1_a",
    "current_l2_a",
    "current_l3_a",
    "voltage_l1_v",
    "voltage_l2_v",
    "voltage_l3_v",
    "energy_import_wh",
    "energy_export_wh",
    "reactive_energy_import_varh",
    "reactive_energy_export_varh",
)


def reading_record(reading: MeterReading) -> dict[str, object]:
    record: dict[str, object] = {"vendor": DISPLAY_NAMES[reading.vendor], "list": int(reading.list_type)}
    for name in RECORD_FIELDS:
        value = getattr(reading, name)
        if value is not None:
            record[name] = value
    if reading.meter_time is not None:
        record["timestamp"] = reading.meter_time.replace(tzinfo=None).isoformat()
    return record
