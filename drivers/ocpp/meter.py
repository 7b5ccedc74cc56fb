"""MeterValues (1.6 and 2.0.1 sampledValue lists) to per-terminal currents, energy register and power.

Only what the charger sent is reported; anything else stays None. L1/L2/L3 are the *charger's*
terminals; mapping them to grid lines is done above the driver.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from drivers.contracts import PerTerminal

ENERGY = "Energy.Active.Import.Register"
CURRENT = "Current.Import"
POWER = "Power.Active.Import"
_SCALE = {"Wh": 1.0, "kWh": 1000.0, "W": 1.0, "kW": 1000.0, "A": 1.0}
_LOCATIONS = (None, "Outlet", "Inlet")
_TERMINAL = {"L1": 0, "L2": 1, "L3": 2}


class BadMeterValue(ValueError):
    """A sampled value we refuse: not a finite number, a negative register, an unreadable timestamp."""


@dataclass(frozen=True, slots=True)
class MeterSample:
    timestamp_utc: datetime
    currents_a: PerTerminal
    energy_wh: float | None
    power_w: float | None
    clock_aligned: bool
    context: str | None


def parse_timestamp(text: Any) -> datetime:
    if not isinstance(text, str):
        raise BadMeterValue("timestamp must be a string")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadMeterValue(f"unreadable timestamp {text[:40]!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # OCPP requires UTC; a charger that leaves out 'Z' means it
    return moment.astimezone(UTC)


def _number(sample: dict[str, Any]) -> float:
    raw = sample.get("value")
    if isinstance(raw, bool):
        raise BadMeterValue("value must be a number")
    if isinstance(raw, str):
        try:
            value = float(raw)
        except ValueError:
            raise BadMeterValue(f"value {raw[:20]!r} is not a number") from None
    elif isinstance(raw, int | float):
        value = float(raw)
    else:
        raise BadMeterValue("value must be a number")
    if not math.isfinite(value):
        raise BadMeterValue(f"value {raw!r} is not finite")
    unit_of_measure = sample.get("unitOfMeasure")
    if isinstance(unit_of_measure, dict):  # 2.0.1
        unit = unit_of_measure.get("unit")
        multiplier = unit_of_measure.get("multiplier", 0)
        if isinstance(multiplier, int) and not isinstance(multiplier, bool) and -3 <= multiplier <= 3:
            value *= 10.0**multiplier
    else:
        unit = sample.get("unit")
    if isinstance(unit, str) and unit in _SCALE:
        value *= _SCALE[unit]
    return value


def parse_meter_values(meter_values: Sequence[Any], *, phases: int) -> list[MeterSample]:
    """One MeterSample per meterValue element. Raises BadMeterValue for a value we cannot trust."""
    samples: list[MeterSample] = []
    for element in meter_values:
        if not isinstance(element, dict):
            raise BadMeterValue("meterValue must be an object")
        timestamp = parse_timestamp(element.get("timestamp"))
        currents: list[float | None] = [None, None, None]
        energy_wh: float | None = None
        power_total_w: float | None = None
        power_phases_w: list[float] = []
        clock_aligned = False
        context: str | None = None
        for sample in element.get("sampledValue", []):
            if not isinstance(sample, dict):
                raise BadMeterValue("sampledValue must be an object")
            if sample.get("format") == "SignedData" or sample.get("location") not in _LOCATIONS:
                continue
            measurand = sample.get("measurand", ENERGY)
            phase = sample.get("phase")
            context = sample.get("context", context)
            if sample.get("context") == "Sample.Clock":
                clock_aligned = True
            if measurand == ENERGY and phase is None:
                value = _number(sample)
                if value < 0:
                    raise BadMeterValue(f"negative energy register {value}")
                energy_wh = value
            elif measurand == CURRENT:
                value = _number(sample)
                terminal = (
                    _TERMINAL.get(phase[:2]) if isinstance(phase, str) else (0 if phases == 1 else None)
                )
                if terminal is not None:
                    currents[terminal] = abs(value)  # direction is not ours to judge; load is load
            elif measurand == POWER:
                value = _number(sample)
                if phase is None:
                    power_total_w = value
                else:
                    power_phases_w.append(value)
        power_w = (
            power_total_w if power_total_w is not None else (sum(power_phases_w) if power_phases_w else None)
        )
        samples.append(
            MeterSample(
                timestamp, (currents[0], currents[1], currents[2]), energy_wh, power_w, clock_aligned, context
            )
        )
    return samples
