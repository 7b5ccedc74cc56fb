"""What the virtual meter measures (ground truth) and which meter it is.

`MeterState` is the truth on the primary side of the installation. `MeterProfile` says which meter
sends it; the meter then decides what goes on the wire (secondary values on CT meters, no IL2 on a
three-wire Aidon, L1 only on a 1-phase meter, each vendor's scalers).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from enum import IntEnum, StrEnum
from typing import Literal


class Vendor(StrEnum):
    AIDON = "aidon"
    KAIFA = "kaifa"
    KAMSTRUP = "kamstrup"
    LANDIS_GYR = "landis_gyr"


class ListType(IntEnum):
    """NVE list content: 1 power only, 2 full instantaneous list, 3 full list + clock + energy.

    Kamstrup's own names differ: its "list 1" (every 10 s) is FULL, its "list 2" (hourly) HOURLY.
    """

    POWER = 1
    FULL = 2
    HOURLY = 3


Grid = Literal["IT", "TN"]
Phases = Literal[1, 3]


@dataclass(frozen=True)
class MeterState:
    """Ground truth at the meter's connection point, primary side.

    current_a: per line L1, L2, L3 in A. A negative current means that line exports (Aidon and
        Landis+Gyr send the sign; Kaifa and Kamstrup send magnitudes).
    voltage_v: on TN the phase voltages U1N, U2N, U3N; on IT the line-to-line voltages U12, U23,
        U31. A 1-phase meter uses index 0 of both (its own current and voltage).
    Powers import/export are each >= 0; energies are the meter's cumulative registers.
    """

    current_a: tuple[float, float, float]
    voltage_v: tuple[float, float, float]
    active_power_import_w: float = 0.0
    active_power_export_w: float = 0.0
    reactive_power_import_var: float = 0.0
    reactive_power_export_var: float = 0.0
    energy_import_wh: float = 0.0
    energy_export_wh: float = 0.0
    reactive_energy_import_varh: float = 0.0
    reactive_energy_export_varh: float = 0.0

    def __post_init__(self) -> None:
        for name in ("current_a", "voltage_v"):
            values = getattr(self, name)
            if len(values) != 3 or not all(math.isfinite(v) for v in values):
                raise ValueError(f"{name} must be three finite numbers, got {values!r}")
        if any(v < 0 for v in self.voltage_v):
            raise ValueError(f"voltages cannot be negative: {self.voltage_v!r}")
        for f in fields(self)[2:]:
            value = getattr(self, f.name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{f.name} must be a finite number >= 0, got {value!r}")


@dataclass(frozen=True)
class MeterProfile:
    """Which meter: vendor, wiring and identity.

    ct_ratio: primary/secondary ratio of the current transformers of a CT meter (1 for a direct
        meter). Such a meter sends current, power and energy as measured on the secondary side,
        i.e. truth / ct_ratio; voltages are unaffected.
    legacy_firmware: Kamstrup only - the firmware of 2017 and earlier that writes `09 0C` before
        the APDU date-time and never flags daylight saving in the clock status.
    """

    vendor: Vendor
    meter_id: str
    model: str
    phases: Phases = 3
    grid: Grid = "TN"
    ct_ratio: float = 1.0
    legacy_firmware: bool = False

    def __post_init__(self) -> None:
        if self.phases not in (1, 3):
            raise ValueError(f"phases must be 1 or 3, got {self.phases!r}")
        if self.grid not in ("IT", "TN"):
            raise ValueError(f"grid must be 'IT' or 'TN', got {self.grid!r}")
        if not (math.isfinite(self.ct_ratio) and self.ct_ratio > 0):
            raise ValueError(f"ct_ratio must be positive, got {self.ct_ratio!r}")
        if not self.meter_id.isascii() or not self.model.isascii():
            raise ValueError("meter_id and model are ASCII strings on the wire")

    @property
    def three_wire(self) -> bool:
        return self.phases == 3 and self.grid == "IT"


# Plausible identities in each vendor's numbering (GS1-style prefixes seen on real meters).
_DEFAULT_MODELS: dict[tuple[Vendor, int, str], str] = {
    (Vendor.AIDON, 1, "TN"): "6515",
    (Vendor.AIDON, 1, "IT"): "6515",
    (Vendor.AIDON, 3, "TN"): "6534",
    (Vendor.AIDON, 3, "IT"): "6525",
    (Vendor.KAIFA, 1, "TN"): "MA105H2E",
    (Vendor.KAIFA, 1, "IT"): "MA105H2E",
    (Vendor.KAIFA, 3, "TN"): "MA304H4",
    (Vendor.KAIFA, 3, "IT"): "MA304H3E",
    (Vendor.KAMSTRUP, 1, "TN"): "6861111BN242101040",
    (Vendor.KAMSTRUP, 1, "IT"): "6861111BN242101040",
    (Vendor.KAMSTRUP, 3, "TN"): "6841131BN243101040",
    (Vendor.KAMSTRUP, 3, "IT"): "6841121BN243101040",
    (Vendor.LANDIS_GYR, 1, "TN"): "ZCF1",
    (Vendor.LANDIS_GYR, 1, "IT"): "ZCF1",
    (Vendor.LANDIS_GYR, 3, "TN"): "ZMF1",
    (Vendor.LANDIS_GYR, 3, "IT"): "ZFF1",
}

_DEFAULT_IDS: dict[Vendor, str] = {
    Vendor.AIDON: "7359992890000001",
    Vendor.KAIFA: "6970631400000001",
    Vendor.KAMSTRUP: "5706567200000001",
    Vendor.LANDIS_GYR: "10000001",
}


def default_profile(
    vendor: Vendor, phases: Phases = 3, grid: Grid = "TN", ct_ratio: float = 1.0
) -> MeterProfile:
    """A profile with a model number that matches the wiring and a made-up meter id."""
    return MeterProfile(
        vendor=vendor,
        meter_id=_DEFAULT_IDS[vendor],
        model=_DEFAULT_MODELS[(vendor, phases, grid)],
        phases=phases,
        grid=grid,
        ct_ratio=ct_ratio,
    )
