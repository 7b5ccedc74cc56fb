"""Aidon and Landis+Gyr lists: an array of (OBIS, value[, scaler/unit]) structures.

From Aidon's "HAN Interface Description" (v1.1A) and captures of both vendors:
- list 1 is one register, 1-0:1.7.0 (P+), with its scaler/unit;
- list 2 is the list version, meter id and model (visible strings), then P+, P-, Q+, Q-,
  currents (long, signed) and voltages (long-unsigned), each with a scaler/unit structure;
- list 3 adds the clock 0-0:1.0.0 and the four energy registers 1-0:1.8.0 .. 4.8.0.
Aidon's three-wire (IT) meters leave IL2 (1-0:51.7.0) out and send line-to-line voltages
U12, U13, U23 in the L1, L2, L3 places. The Landis+Gyr E350 (list id EMBRIQ_V1_1) keeps IL2 and
UL2 on IT but sends them as 0, uses 0.01 A for currents and pads its 8-digit meter id with NULs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from . import axdr
from .model import ListType, MeterProfile, MeterState

_CURRENT_OBIS = ("1-0:31.7.0", "1-0:51.7.0", "1-0:71.7.0")
_VOLTAGE_OBIS = ("1-0:32.7.0", "1-0:52.7.0", "1-0:72.7.0")
_ENERGY = (
    ("1-0:1.8.0", axdr.UNIT_WH),
    ("1-0:2.8.0", axdr.UNIT_WH),
    ("1-0:3.8.0", axdr.UNIT_VARH),
    ("1-0:4.8.0", axdr.UNIT_VARH),
)


@dataclass(frozen=True)
class ObisDialect:
    list_version: bytes
    current_scaler: int
    voltage_scaler: int
    energy_scaler: int
    il2_on_three_wire: Literal["absent", "zero"]
    ul2_on_three_wire: Literal["u13", "zero"]
    meter_id_width: int | None  # pad the meter id with NULs to this many bytes


AIDON = ObisDialect(
    list_version=b"AIDON_V0001",
    current_scaler=-1,
    voltage_scaler=-1,
    energy_scaler=1,
    il2_on_three_wire="absent",
    ul2_on_three_wire="u13",
    meter_id_width=None,
)

# No hourly list of this meter has been published: the energy scaler (Wh) is an assumption; the
# frame carries its scaler, so a reader that honours it decodes whatever is chosen here.
LANDIS_GYR = ObisDialect(
    list_version=b"EMBRIQ_V1_1",
    current_scaler=-2,
    voltage_scaler=-1,
    energy_scaler=0,
    il2_on_three_wire="zero",
    ul2_on_three_wire="zero",
    meter_id_width=16,
)


def _text(code: str, value: bytes) -> bytes:
    return axdr.structure(2) + axdr.obis(code) + axdr.visible_string(value)


def _register(code: str, value: bytes, scaler: int, unit: int) -> bytes:
    return axdr.structure(3) + axdr.obis(code) + value + axdr.scaler_unit(scaler, unit)


def _power(code: str, value_w: float, unit: int) -> bytes:
    return _register(code, axdr.u32(axdr.scaled(value_w, 0)), 0, unit)


def body(
    dialect: ObisDialect, profile: MeterProfile, list_type: ListType, state: MeterState, clock: bytes
) -> bytes:
    if list_type is ListType.POWER:
        return axdr.array(1) + _power("1-0:1.7.0", state.active_power_import_w, axdr.UNIT_W)

    meter_id = profile.meter_id.encode("ascii")
    if dialect.meter_id_width is not None:
        meter_id = meter_id.ljust(dialect.meter_id_width, b"\x00")
    items = [
        _text("1-1:0.2.129", dialect.list_version),
        _text("0-0:96.1.0", meter_id),
        _text("0-0:96.1.7", profile.model.encode("ascii")),
        _power("1-0:1.7.0", state.active_power_import_w, axdr.UNIT_W),
        _power("1-0:2.7.0", state.active_power_export_w, axdr.UNIT_W),
        _power("1-0:3.7.0", state.reactive_power_import_var, axdr.UNIT_VAR),
        _power("1-0:4.7.0", state.reactive_power_export_var, axdr.UNIT_VAR),
    ]

    currents: list[float | None] = list(state.current_a)
    voltages: list[float] = list(state.voltage_v)
    if profile.three_wire:
        u12, u23, u31 = state.voltage_v
        if dialect.il2_on_three_wire == "absent":
            currents[1] = None
        else:
            currents[1] = 0.0
        voltages = [u12, u31 if dialect.ul2_on_three_wire == "u13" else 0.0, u23]
    lines = range(1) if profile.phases == 1 else range(3)

    cs = dialect.current_scaler
    for line in lines:
        current = currents[line]
        if current is not None:
            value = axdr.i16(axdr.scaled(current, cs))
            items.append(_register(_CURRENT_OBIS[line], value, cs, axdr.UNIT_A))
    vs = dialect.voltage_scaler
    for line in lines:
        value = axdr.u16(axdr.scaled(voltages[line], vs))
        items.append(_register(_VOLTAGE_OBIS[line], value, vs, axdr.UNIT_V))

    if list_type is ListType.HOURLY:
        items.append(axdr.structure(2) + axdr.obis("0-0:1.0.0") + axdr.octet_string(clock))
        energies = (
            state.energy_import_wh,
            state.energy_export_wh,
            state.reactive_energy_import_varh,
            state.reactive_energy_export_varh,
        )
        es = dialect.energy_scaler
        for (code, unit), energy in zip(_ENERGY, energies, strict=True):
            items.append(_register(code, axdr.u32(axdr.scaled(energy, es)), es, unit))
    return axdr.array(len(items)) + b"".join(items)
