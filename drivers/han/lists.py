"""What the vendors put in their HAN lists: OBIS codes, Kaifa's positions, implicit scalers.

Facts from the NVE-era vendor documents (Aidon "HAN Interface Description", Kaifa "KFM_001",
Kamstrup "HAN NVE interface") as checked against the captured frames in ../shared/data/han.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType

from drivers.contracts import MeterVendor


class Quantity(enum.Enum):
    TEXT = "text"
    CLOCK = "clock"
    POWER = "power"
    CURRENT = "current"
    VOLTAGE = "voltage"
    ENERGY = "energy"


# MeterReading field -> what kind of value it holds. Order is the order of MeterReading and of output.
FIELD_QUANTITY: Mapping[str, Quantity] = MappingProxyType(
    {
        "list_version": Quantity.TEXT,
        "meter_id": Quantity.TEXT,
        "meter_model": Quantity.TEXT,
        "meter_time": Quantity.CLOCK,
        "active_power_import_w": Quantity.POWER,
        "active_power_export_w": Quantity.POWER,
        "reactive_power_import_var": Quantity.POWER,
        "reactive_power_export_var": Quantity.POWER,
        "current_l1_a": Quantity.CURRENT,
        "current_l2_a": Quantity.CURRENT,
        "current_l3_a": Quantity.CURRENT,
        "voltage_l1_v": Quantity.VOLTAGE,
        "voltage_l2_v": Quantity.VOLTAGE,
        "voltage_l3_v": Quantity.VOLTAGE,
        "energy_import_wh": Quantity.ENERGY,
        "energy_export_wh": Quantity.ENERGY,
        "reactive_energy_import_varh": Quantity.ENERGY,
        "reactive_energy_export_varh": Quantity.ENERGY,
    }
)

# The current transformer scales what flows through it: current, power and energy, not voltage.
CT_SCALED = frozenset({Quantity.POWER, Quantity.CURRENT, Quantity.ENERGY})

# OBIS code A-B:C.D.E.F -> field, keyed by (A, C, D, E): vendors differ in the channel B (Kamstrup
# uses 1, the others 0), which carries no meaning for a single meter.
OBIS_FIELDS: Mapping[tuple[int, int, int, int], str] = MappingProxyType(
    {
        (1, 0, 2, 129): "list_version",  # 1-1:0.2.129.255 (Aidon), 1-0:0.2.129.255 (Kaifa SE)
        (0, 96, 1, 0): "meter_id",  # 0-0:96.1.0.255 (Aidon, Kaifa)
        (1, 0, 0, 5): "meter_id",  # 1-1:0.0.5.255 (Kamstrup)
        (0, 96, 1, 7): "meter_model",  # 0-0:96.1.7.255 (Aidon, Kaifa)
        (1, 96, 1, 1): "meter_model",  # 1-1:96.1.1.255 (Kamstrup)
        (0, 1, 0, 0): "meter_time",  # clock object 0-0:1.0.0.255 / 0-1:1.0.0.255
        (1, 1, 7, 0): "active_power_import_w",
        (1, 2, 7, 0): "active_power_export_w",
        (1, 3, 7, 0): "reactive_power_import_var",
        (1, 4, 7, 0): "reactive_power_export_var",
        (1, 31, 7, 0): "current_l1_a",
        (1, 51, 7, 0): "current_l2_a",
        (1, 71, 7, 0): "current_l3_a",
        (1, 32, 7, 0): "voltage_l1_v",
        (1, 52, 7, 0): "voltage_l2_v",
        (1, 72, 7, 0): "voltage_l3_v",
        (1, 1, 8, 0): "energy_import_wh",
        (1, 2, 8, 0): "energy_export_wh",
        (1, 3, 8, 0): "reactive_energy_import_varh",
        (1, 4, 8, 0): "reactive_energy_export_varh",
    }
)

_KAIFA_HEAD = ("list_version", "meter_id", "meter_model")
_POWERS = (
    "active_power_import_w",
    "active_power_export_w",
    "reactive_power_import_var",
    "reactive_power_export_var",
)
_ENERGY = (
    "meter_time",
    "energy_import_wh",
    "energy_export_wh",
    "reactive_energy_import_varh",
    "reactive_energy_export_varh",
)
_THREE_PHASE = (
    "current_l1_a",
    "current_l2_a",
    "current_l3_a",
    "voltage_l1_v",
    "voltage_l2_v",
    "voltage_l3_v",
)
_ONE_PHASE = ("current_l1_a", "voltage_l1_v")

# Kaifa KFM_001 sends bare values; the number of elements says which list it is.
KAIFA_POSITIONS: Mapping[int, tuple[str, ...]] = MappingProxyType(
    {
        1: ("active_power_import_w",),
        9: (*_KAIFA_HEAD, *_POWERS, *_ONE_PHASE),
        13: (*_KAIFA_HEAD, *_POWERS, *_THREE_PHASE),
        14: (*_KAIFA_HEAD, *_POWERS, *_ONE_PHASE, *_ENERGY),
        18: (*_KAIFA_HEAD, *_POWERS, *_THREE_PHASE, *_ENERGY),
    }
)

# Decimal exponents for lists that carry no scaler/unit (Kaifa, Kamstrup), and Aidon's documented
# ones for a register that lacks its scaler. Landis+Gyr always sends them, so it has no entry.
IMPLICIT_SCALERS: Mapping[MeterVendor, Mapping[Quantity, int]] = MappingProxyType(
    {
        MeterVendor.KAIFA: MappingProxyType(
            {Quantity.POWER: 0, Quantity.CURRENT: -3, Quantity.VOLTAGE: -1, Quantity.ENERGY: 0}
        ),
        MeterVendor.KAMSTRUP: MappingProxyType(
            {Quantity.POWER: 0, Quantity.CURRENT: -2, Quantity.VOLTAGE: 0, Quantity.ENERGY: 1}
        ),
        MeterVendor.AIDON: MappingProxyType(
            {Quantity.POWER: 0, Quantity.CURRENT: -1, Quantity.VOLTAGE: -1, Quantity.ENERGY: 1}
        ),
    }
)

_LIST_VERSION_PREFIXES: tuple[tuple[str, MeterVendor], ...] = (
    ("AIDON", MeterVendor.AIDON),
    ("KFM", MeterVendor.KAIFA),
    ("KAMSTRUP", MeterVendor.KAMSTRUP),
    ("EMBRIQ", MeterVendor.LANDIS_GYR),
    ("LGF", MeterVendor.LANDIS_GYR),
    ("LANDIS", MeterVendor.LANDIS_GYR),
)

DISPLAY_NAMES: Mapping[MeterVendor, str] = MappingProxyType(
    {
        MeterVendor.AIDON: "Aidon",
        MeterVendor.KAIFA: "Kaifa",
        MeterVendor.KAMSTRUP: "Kamstrup",
        MeterVendor.LANDIS_GYR: "Landis+Gyr",
    }
)

# Serial line settings of each vendor's HAN port: 2400 baud, 8 data bits, this parity, 1 stop bit.
PARITY: Mapping[MeterVendor, str] = MappingProxyType(
    {
        MeterVendor.AIDON: "E",
        MeterVendor.KAIFA: "E",
        MeterVendor.LANDIS_GYR: "E",
        MeterVendor.KAMSTRUP: "N",
    }
)
BAUD_RATE = 2400


def vendor_from_list_version(list_version: str | None) -> MeterVendor | None:
    if not list_version:
        return None
    upper = list_version.upper()
    for prefix, vendor in _LIST_VERSION_PREFIXES:
        if upper.startswith(prefix):
            return vendor
    return None


def same_list_family(a: MeterVendor, b: MeterVendor) -> bool:
    """Aidon and Norwegian Landis+Gyr meters send the same self-describing list format."""
    structured = {MeterVendor.AIDON, MeterVendor.LANDIS_GYR}
    return a == b or (a in structured and b in structured)


def parse_vendor(name: str) -> MeterVendor | None:
    """A configured vendor name (`auto`, `aidon`, `landis_gyr`, `Landis+Gyr`, ...); None for auto."""
    key = name.strip().lower().replace("+", "_").replace("-", "_").replace(" ", "_")
    if key == "auto":
        return None
    if key in ("lg", "l&g", "landis", "landisgyr"):
        return MeterVendor.LANDIS_GYR
    try:
        return MeterVendor(key)
    except ValueError:
        raise ValueError(
            f"unknown meter vendor {name!r}: expected auto, aidon, kaifa, kamstrup or landis_gyr"
        ) from None
