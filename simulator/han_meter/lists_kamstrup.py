"""Kamstrup_V0001 lists: a structure of the list version then (OBIS, value) pairs.

From Kamstrup's "HAN-NVE interface description" (rev 3.1) and captures. Kamstrup has no
power-only list: its "list 1" (every 10 s) is the full list, its "list 2" (hourly) adds the clock
0-1:1.0.0 and the energy registers. Values are bare, with fixed scalers: W, var, 0.01 A
(double-long-unsigned), 1 V (long-unsigned), 10 Wh/varh. Real 1-phase meters keep the 3-phase
element count and fill the IL2/IL3 and UL2/UL3 places (OBIS and value) with null-data. The
three-wire (IT) meter sends all three currents (IL2 computed) and U12, U13 (computed), U23.
"""

from __future__ import annotations

from . import axdr
from .model import ListType, MeterProfile, MeterState

LIST_VERSION = b"Kamstrup_V0001"

_CURRENT_OBIS = ("1-1:31.7.0", "1-1:51.7.0", "1-1:71.7.0")
_VOLTAGE_OBIS = ("1-1:32.7.0", "1-1:52.7.0", "1-1:72.7.0")
_ENERGY_OBIS = ("1-1:1.8.0", "1-1:2.8.0", "1-1:3.8.0", "1-1:4.8.0")
_ABSENT_LINES = [axdr.NULL] * 4


def body(profile: MeterProfile, list_type: ListType, state: MeterState, clock: bytes) -> bytes:
    if list_type is ListType.POWER:
        raise ValueError("Kamstrup meters have no power-only list")

    elements = [
        axdr.visible_string(LIST_VERSION),
        axdr.obis("1-1:0.0.5"),
        axdr.visible_string(profile.meter_id.encode("ascii")),
        axdr.obis("1-1:96.1.1"),
        axdr.visible_string(profile.model.encode("ascii")),
    ]
    powers = (
        state.active_power_import_w,
        state.active_power_export_w,
        state.reactive_power_import_var,
        state.reactive_power_export_var,
    )
    for quantity, value in enumerate(powers, start=1):
        elements += [axdr.obis(f"1-1:{quantity}.7.0"), axdr.u32(axdr.scaled(value, 0))]

    voltages = list(state.voltage_v)
    if profile.three_wire:
        u12, u23, u31 = state.voltage_v
        voltages = [u12, u31, u23]
    n = 1 if profile.phases == 1 else 3
    for line in range(n):
        elements += [axdr.obis(_CURRENT_OBIS[line]), axdr.u32(axdr.scaled(abs(state.current_a[line]), -2))]
    if n == 1:
        elements += _ABSENT_LINES
    for line in range(n):
        elements += [axdr.obis(_VOLTAGE_OBIS[line]), axdr.u16(axdr.scaled(voltages[line], 0))]
    if n == 1:
        elements += _ABSENT_LINES

    if list_type is ListType.HOURLY:
        elements += [axdr.obis("0-1:1.0.0"), axdr.octet_string(clock)]
        energies = (
            state.energy_import_wh,
            state.energy_export_wh,
            state.reactive_energy_import_varh,
            state.reactive_energy_export_varh,
        )
        for code, energy in zip(_ENERGY_OBIS, energies, strict=True):
            elements += [axdr.obis(code), axdr.u32(axdr.scaled(energy, 1))]
    return axdr.structure(len(elements)) + b"".join(elements)
