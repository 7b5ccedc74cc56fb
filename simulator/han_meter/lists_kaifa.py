"""Kaifa KFM_001 lists: a structure of bare values in fixed positions, no OBIS codes.

From Kaifa's KFM_001 OBIS list and captures: list 1 is P+ alone; list 2 is the list version,
meter id, model (octet strings), P+, P-, Q+, Q-, IL1..IL3, UL1..UL3 as double-long-unsigned with
fixed scalers (W, var, mA, 0.1 V); list 3 adds the clock (octet string) and the energy registers
in Wh/varh. A 1-phase meter sends IL1 and UL1 only. The three-wire (IT) MA304H3E sends IL2 as the
meter computes it, U12 and U32 in the UL1 and UL3 places, and UL2 as 0.
"""

from __future__ import annotations

from . import axdr
from .model import ListType, MeterProfile, MeterState

LIST_VERSION = b"KFM_001"


def body(profile: MeterProfile, list_type: ListType, state: MeterState, clock: bytes) -> bytes:
    if list_type is ListType.POWER:
        return axdr.structure(1) + axdr.u32(axdr.scaled(state.active_power_import_w, 0))

    items = [
        axdr.octet_string(LIST_VERSION),
        axdr.octet_string(profile.meter_id.encode("ascii")),
        axdr.octet_string(profile.model.encode("ascii")),
        axdr.u32(axdr.scaled(state.active_power_import_w, 0)),
        axdr.u32(axdr.scaled(state.active_power_export_w, 0)),
        axdr.u32(axdr.scaled(state.reactive_power_import_var, 0)),
        axdr.u32(axdr.scaled(state.reactive_power_export_var, 0)),
    ]
    voltages = list(state.voltage_v)
    if profile.three_wire:
        u12, u23, _u31 = state.voltage_v
        voltages = [u12, 0.0, u23]
    n = 1 if profile.phases == 1 else 3
    items += [axdr.u32(axdr.scaled(abs(i), -3)) for i in state.current_a[:n]]
    items += [axdr.u32(axdr.scaled(u, -1)) for u in voltages[:n]]

    if list_type is ListType.HOURLY:
        items.append(axdr.octet_string(clock))
        items += [
            axdr.u32(axdr.scaled(e, 0))
            for e in (
                state.energy_import_wh,
                state.energy_export_wh,
                state.reactive_energy_import_varh,
                state.reactive_energy_export_varh,
            )
        ]
    return axdr.structure(len(items)) + b"".join(items)
